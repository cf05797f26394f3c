"""The customer-partition processor: the logic behind the customer agent.

It owns, per assigned partition of the customer-keyed topic, the stream clock
and the due index, both rebuilt from the tables when the partition is (re)
assigned and dropped on revocation.  It speaks bytes in and bytes out through a
small :class:`StateStore` protocol, so it runs the same over a Faust table and
over a dict in unit tests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import orjson

from agents.core.clock import NEVER, StreamClock, WallClock, source_name
from agents.core.due_index import DueIndex
from agents.core.engine import Conversion, Emission, Engine, Firing
from agents.core.state import CustomerState
from agents.messages import decision_record, dumps, nudge_record, outcome_record
from schemas.records import Event

# One table holds both kinds of record; the prefixes keep any customer id (which
# may be any string) from ever colliding with a partition's clock.
CUSTOMER_KEY_PREFIX = "c/"
CLOCK_KEY_PREFIX = "clock/"
# Persist a partition's stream clock at least this often (messages); a stale
# clock after a crash only delays firings, it never changes them.
CLOCK_PERSIST_EVERY = 500


class StateStore(Protocol):
    def get(self, key: str) -> bytes | None: ...

    def scan(self, partition: int) -> Iterable[tuple[str, bytes]]: ...


@dataclass(slots=True)
class Output:
    topic: str
    key: str
    value: bytes


@dataclass(slots=True)
class Result:
    outputs: list[Output] = field(default_factory=list)
    writes: dict[str, bytes] = field(default_factory=dict)


@dataclass(slots=True)
class PartitionRuntime:
    partition: int
    clock: StreamClock
    index: DueIndex
    watermark: int = NEVER
    since_persist: int = 0


class CustomerProcessor:
    def __init__(
        self,
        engine: Engine,
        *,
        mode: str,
        sources: Iterable[str],
        nudges_topic: str,
        decisions_topic: str,
        outcomes_topic: str,
        wall_clock: WallClock,
    ) -> None:
        self.engine = engine
        self.mode = mode
        self.sources = tuple(sources)
        self.nudges_topic = nudges_topic
        self.decisions_topic = decisions_topic
        self.outcomes_topic = outcomes_topic
        self.wall_clock = wall_clock
        self.runtimes: dict[int, PartitionRuntime] = {}
        self.counters: Counter[str] = Counter()
        self.decision_counts: Counter[tuple[str, int, str]] = Counter()

    # --- partition lifecycle ---------------------------------------------------------

    def revoke(self, partitions: Iterable[int] | None = None) -> None:
        if partitions is None:
            self.runtimes.clear()
            return
        for p in partitions:
            self.runtimes.pop(p, None)

    def runtime(self, partition: int, store: StateStore) -> PartitionRuntime:
        rt = self.runtimes.get(partition)
        if rt is not None:
            return rt
        raw_clock = store.get(CLOCK_KEY_PREFIX + str(partition))
        clock = StreamClock.restore(
            self.sources,
            self.engine.settings.stream_allowed_lateness,
            orjson.loads(raw_clock) if raw_clock else None,
        )
        index = DueIndex()
        rebuilt = 0
        for key, value in store.scan(partition):
            if not key.startswith(CUSTOMER_KEY_PREFIX):
                continue
            state = CustomerState.from_dict(orjson.loads(value))
            if state.partition != partition:
                continue
            index.set(state.customer_id, self.engine.wake_at(state))
            rebuilt += 1
        self.counters["index_rebuilds"] += 1
        self.counters["index_rebuilt_customers"] += rebuilt
        rt = self.runtimes[partition] = PartitionRuntime(partition, clock, index)
        return rt

    # --- messages ----------------------------------------------------------------------

    def handle(self, partition: int, value: bytes, store: StateStore) -> Result:
        rt = self.runtime(partition, store)
        msg = orjson.loads(value)
        kind = msg.get("type")
        result = Result()
        states: dict[str, CustomerState] = {}
        firings: list[Emission] = []
        persist_clock = False
        if kind == "ev":
            event = Event.from_wire(msg["ev"])
            if self.mode == "stream":
                rt.clock.observe(msg["src"], event.occurred_at)
            wm = self._watermark(rt)
            state = self._load(event.customer_id, partition, store)
            fired = self.engine.ingest(state, event, wm)
            if fired is None:
                self.counters["duplicates"] += 1
            else:
                self.counters["events"] += 1
                states[event.customer_id] = state
                firings.extend(fired)
        elif kind == "adv":
            if self.mode == "stream":
                rt.clock.mark(msg["src"], int(msg["until"]))
                persist_clock = True
        elif kind == "tick":
            self.counters["ticks"] += 1
        wm = self._watermark(rt)
        if wm > rt.watermark:
            rt.watermark = wm
            for cid in rt.index.pop_due(wm):
                state = states.get(cid) or self._load(cid, partition, store)
                firings.extend(self.engine.advance(state, wm))
                states[cid] = state
        for cid, state in states.items():
            state.version += 1
            state.partition = partition
            result.writes[CUSTOMER_KEY_PREFIX + cid] = orjson.dumps(state.to_dict())
            rt.index.set(cid, self.engine.wake_at(state))
        self._emit(firings, result)
        if self.mode == "stream":
            rt.since_persist += 1
            if persist_clock or rt.since_persist >= CLOCK_PERSIST_EVERY:
                rt.since_persist = 0
                result.writes[CLOCK_KEY_PREFIX + str(partition)] = orjson.dumps(rt.clock.to_dict())
        return result

    def _watermark(self, rt: PartitionRuntime) -> int:
        return rt.clock.watermark() if self.mode == "stream" else self.wall_clock()

    def _load(self, cid: str, partition: int, store: StateStore) -> CustomerState:
        raw = store.get(CUSTOMER_KEY_PREFIX + cid)
        if raw is None:
            return CustomerState(customer_id=cid, partition=partition)
        return CustomerState.from_dict(orjson.loads(raw))

    def _emit(self, emissions: list[Emission], result: Result) -> None:
        if not emissions:
            return
        firings = [e for e in emissions if isinstance(e, Firing)]
        # Simultaneous firings go out by (due time, rule order, step): SPEC section 4.
        firings.sort(key=lambda f: (f.due_at, f.customer_id, f.rule_index, f.step))
        now = self.wall_clock()
        for f in firings:
            if f.backfill:
                self.counters["backfill_silenced"] += 1
                continue
            decision = decision_record(
                f, fired_at=now, clock=self.mode, outcome=f.outcome, holdout=f.holdout
            )
            self.decision_counts[(f.rule, f.step, f.outcome)] += 1
            result.outputs.append(Output(self.decisions_topic, f.customer_id, dumps(decision)))
            if f.delivered:
                result.outputs.append(
                    Output(self.nudges_topic, f.customer_id, dumps(nudge_record(decision)))
                )
        window = self.engine.settings.attribution_window
        for c in emissions:
            if isinstance(c, Conversion):
                self.counters["outcomes"] += 1
                record = outcome_record(c, attribution_window=window)
                result.outputs.append(Output(self.outcomes_topic, c.customer_id, dumps(record)))


def input_sources(topics: Iterable[str], partitions: int) -> list[str]:
    """Every input topic-partition that feeds the stream clock."""
    return [source_name(t, p) for t in topics for p in range(partitions)]


ScanFn = Callable[[int], Iterable[tuple[str, bytes]]]
