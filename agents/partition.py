"""A partition of the customer table, as the customer processor holds it.

For each assigned partition of the internal topic, :class:`agents.customer.CustomerProcessor`
keeps a :class:`PartitionRuntime`: the stream clock and the due index, rebuilt from
the table the first time the partition is seen after an assignment and dropped on
revocation, and the work fed but not processed yet.  The table is reached through
the small :class:`StateStore` protocol, so the processor runs the same over a Faust
table and over a dict in unit tests.  Customer states are read from their rows here
and written back to them (the row keys are :mod:`agents.contract`'s).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from agents.contract import (
    CLOCK_KEY_PREFIX,
    CUSTOMER_KEY_PREFIX,
    EMPTY_CHUNK,
    pending_key,
    rules_key,
    rules_text_key,
)
from agents.core.clock import NEVER, StreamClock
from agents.core.due_index import DueIndex
from agents.core.engine import Engine
from agents.core.rules import load_rules
from agents.core.rules.history import RuleHistory, Version
from agents.core.state import CustomerState

log = logging.getLogger(__name__)


class StateStore(Protocol):
    def get(self, key: str) -> bytes | None: ...

    def scan(self, partition: int) -> Iterable[tuple[str, bytes]]:
        """Only the rows of ``partition`` (streams.faust_adapter.TableStore)."""
        ...


# (customer_id, partition, store) -> the customer's state at the start of a slice.
Loader = Callable[[str, int, StateStore], CustomerState]


@dataclass(slots=True)
class PartitionRuntime:
    partition: int
    clock: StreamClock
    index: DueIndex
    # The rules versions this partition switched to and the engine running them
    # (docs/rules.md "Changing rules"); the seed alone until a change arrives.
    engine: Engine
    # Version ids refused here (incompatible): one dead letter, not one per input partition.
    refused: set[str] = field(default_factory=set)
    history_changed: bool = False  # a version adopted since the rows were last written
    watermark: int = NEVER
    since_persist: int = 0
    # Wall-clock micros when the watermark last moved (0: not yet): a stuck stream
    # clock shows as a growing gap (docs/operations.md "Operations").
    advanced_at: int = 0
    # Wall-clock micros of the first and the newest event taken in (0: none yet):
    # a clock that never starts is stuck from its first event on (docs/time.md "Time").
    first_event_at: int = 0
    last_event_at: int = 0
    # Fed and not yet processed: ("m", offset, raw value), ("p", offset, an item of a
    # bundle, parsed) or ("d", customer_id, watermark).
    work: deque[tuple[str, Any, Any]] = field(default_factory=deque)


def restore_clock(
    partition: int, store: StateStore, sources: Iterable[str], allowed_lateness: int
) -> StreamClock:
    """The partition's stream clock as its clock row holds it (none: not started)."""
    raw_clock = store.get(CLOCK_KEY_PREFIX + str(partition))
    return StreamClock.restore(
        sources, allowed_lateness, orjson.loads(raw_clock) if raw_clock else None
    )


def rebuild_index(
    partition: int,
    store: StateStore,
    wake_at: Callable[[CustomerState], int | None],
    newer: Mapping[str, CustomerState] | None = None,
) -> tuple[DueIndex, int]:
    """The due index of every customer of the partition, and how many there are;
    ``newer`` holds states newer than their rows (not written yet)."""
    index = DueIndex()
    newer = newer or {}
    for cid, state in newer.items():
        index.set(cid, wake_at(state))
    rebuilt = len(newer)
    for key, value in store.scan(partition):
        if not key.startswith(CUSTOMER_KEY_PREFIX) or key[len(CUSTOMER_KEY_PREFIX) :] in newer:
            continue
        state = CustomerState.from_dict(orjson.loads(value))
        index.set(state.customer_id, wake_at(state))
        rebuilt += 1
    return index, rebuilt


def read_history(partition: int, store: StateStore, seed: RuleHistory) -> RuleHistory:
    """The versions the partition switched to, after ``seed`` (the worker's rules),
    as its rows hold them: added in order, so the bound drops what it dropped."""
    raw = store.get(rules_key(partition))
    history = seed
    for entry in orjson.loads(raw) if raw else ():
        vid = entry["id"]
        text_row = store.get(rules_text_key(partition, vid))
        try:
            if text_row is None:
                raise ValueError("its text row is missing")
            text = text_row.decode()
            version = Version(
                vid, load_rules(text), text, entry["effective_at"], entry["applied_at"]
            )
        except ValueError as exc:
            # Skipped rather than crashing every start: the partition runs without
            # it, and says so (a text a later release's checks refuse, say).
            log.error("partition %d: rules version %s cannot be restored: %s", partition, vid, exc)
            continue
        history = history.add(version)
    return history


def write_history(
    writes: dict[str, bytes], partition: int, history: RuleHistory, store: StateStore
) -> None:
    """Add the partition's versions after the seed to ``writes``: each text not
    stored yet first, then the list that names them (a crash between them leaves a
    text unnamed, never a name without its text)."""
    switched = [v for v in history.versions if v.applied_at is not None]
    for v in switched:
        key = rules_text_key(partition, v.id)
        if store.get(key) is None:
            writes[key] = v.text.encode()
    writes[rules_key(partition)] = orjson.dumps(
        [{"id": v.id, "effective_at": v.effective_at, "applied_at": v.applied_at} for v in switched]
    )


def load_state(cid: str, partition: int, store: StateStore) -> CustomerState:
    """The customer's state as its row holds it (a new one if it has none); its
    overflow chunks are read from the store only when the pending queue needs them."""
    raw = store.get(CUSTOMER_KEY_PREFIX + cid)
    if raw is None:
        state = CustomerState(customer_id=cid, partition=partition)
    else:
        state = CustomerState.from_dict(orjson.loads(raw))
    state.spill.fetch = _chunk_reader(cid, store)
    return state


def carrying_loader(carry: Mapping[str, CustomerState]) -> Loader:
    """A loader that takes a state from ``carry`` (states whose rows are not in the
    store yet) before the store."""

    def load(cid: str, partition: int, store: StateStore) -> CustomerState:
        state = carry.get(cid)
        return state if state is not None else load_state(cid, partition, store)

    return load


def _chunk_reader(cid: str, store: StateStore) -> Callable[[int], list[dict[str, Any]] | None]:
    def fetch(slot: int) -> list[dict[str, Any]] | None:
        raw = store.get(pending_key(slot, cid))
        return None if raw is None else list(orjson.loads(raw))

    return fetch


def write_state(writes: dict[str, bytes], cid: str, state: CustomerState, partition: int) -> None:
    """Add the rows of a changed customer to ``writes``, one version newer."""
    state.version += 1
    state.partition = partition
    # Overflow rows first, the row that names them next, emptied ones last:
    # a crash between any two leaves the row's chunks intact (agents.core.pending).
    chunks, emptied = state.spill.flush()
    for slot, chunk in chunks.items():
        writes[pending_key(slot, cid)] = chunk
    writes[CUSTOMER_KEY_PREFIX + cid] = orjson.dumps(state.to_dict())
    for slot in emptied:
        writes[pending_key(slot, cid)] = EMPTY_CHUNK


def write_clock(writes: dict[str, bytes], rt: PartitionRuntime) -> None:
    """Add the partition's stream clock row to ``writes``."""
    writes[CLOCK_KEY_PREFIX + str(rt.partition)] = orjson.dumps(rt.clock.to_dict())
