"""Pending events beyond the row's share: overflow rows of the same table.

A customer's events dated after the clock wait in a :class:`PendingQueue`
(``CustomerState.queue``).  Its *head* is inside the customer's row (at most
``max_pending_events`` entries and, with the index below,
:data:`agents.core.budget.PENDING_BUDGET` bytes).  When
more wait - an input partition consumed ahead of the others holds the clock
back while its events keep coming (docs/time.md "Time") - the latest of them move to
*overflow rows*: sorted chunks of entries, each a row of the same changelogged
table, so they survive crashes and move with the partition.  Every overflow
entry sorts after every head entry (by time, then event id); when the head
empties it is refilled from the first chunk, so the engine always finds the
earliest pending event at the head.  Only the hostile-input cap
(``CoreSettings.max_pending_bytes``) refuses an event (docs/budget.md "Byte budget").

Chunks are written copy-on-write: a changed chunk goes to a slot the stored
customer row does not name, the customer row (which names the slots) is written
after it, and a slot the row stops naming is emptied after that.  The rows of a
slice reach the changelog in that order, so a crash between any two leaves a
customer row whose chunks are all intact.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from agents.core.budget import (
    MAX_ENTRY_BYTES,
    PENDING_BUDGET,
    ROW_PENDING_BUDGET,
    entry_size,
    max_index_bytes,
)
from agents.core.settings import CoreSettings

Entry = dict[str, Any]
# Reads the stored chunk of a slot (None: no such row).
Fetch = Callable[[int], list[Entry] | None]


def entry_key(entry: Entry) -> tuple[int, str]:
    """The order pending events are applied in: time, then event id."""
    return (entry["t"], entry["e"])


@dataclass(frozen=True, slots=True)
class PendingLimits:
    """How much of the pending queue the customer row holds, and each overflow row."""

    head_events: int
    head_bytes: int  # head entries + the overflow index, inside the customer row
    chunk_bytes: int  # entries of one overflow row


# No limit: everything stays in the row (callers that never spill).
UNLIMITED = PendingLimits(1 << 62, 1 << 62, 1 << 62)


@dataclass(slots=True)
class Spill:
    """The overflow chunks of one customer, in key order.

    ``index`` (stored in the customer row) holds ``[slot, t, e]`` per chunk: the
    row's slot and the key of its first entry.  ``events`` and ``bytes`` count
    every overflow entry (``size`` in bytes as :func:`entry_size` counts them), so the cap is
    checked without reading a chunk.
    """

    index: list[list[Any]] = field(default_factory=list)
    events: int = 0
    size: int = 0
    fetch: Fetch | None = field(default=None, repr=False, compare=False)
    # Chunks read or changed since the state was loaded, and their bytes, by slot.
    _chunks: dict[int, list[Entry]] = field(default_factory=dict, repr=False, compare=False)
    _sizes: dict[int, int] = field(default_factory=dict, repr=False, compare=False)
    _dirty: set[int] = field(default_factory=set, repr=False, compare=False)
    # Slots the stored customer row names: never overwritten (copy-on-write).
    _stored: set[int] = field(default_factory=set, repr=False, compare=False)
    _index_bytes: int | None = field(default=None, repr=False, compare=False)

    def __bool__(self) -> bool:
        return bool(self.index)

    # --- the stored form ------------------------------------------------------------

    def to_wire(self) -> dict[str, Any]:
        return {"rows": self.index, "n": self.events, "b": self.size}

    @classmethod
    def from_wire(cls, wire: dict[str, Any] | None) -> Spill:
        if not wire:
            return cls()
        index = [list(x) for x in wire.get("rows", [])]
        return cls(index, wire.get("n", 0), wire.get("b", 0), _stored={x[0] for x in index})

    def index_bytes(self) -> int:
        """Bytes the index adds to the customer row (0 when nothing overflows)."""
        if not self.index:
            return 0
        if self._index_bytes is None:
            self._index_bytes = len(orjson.dumps(self.to_wire())) + 16
        return self._index_bytes

    def first_key(self) -> tuple[int, str]:
        return (self.index[0][1], self.index[0][2])

    # --- changes --------------------------------------------------------------------

    def insert(self, entry: Entry, limits: PendingLimits) -> None:
        """Add an entry that sorts after every head entry."""
        key = entry_key(entry)
        i = max(bisect.bisect_right(self.index, key, key=_first) - 1, 0)
        if not self.index:
            self._new_chunk(0, [entry])
        else:
            chunk = self._load(i)
            chunk.insert(bisect.bisect_right(chunk, key, key=entry_key), entry)
            self._changed(i, entry_size(entry))
        self.events += 1
        self.size += entry_size(entry)
        slot = self.index[i][0]
        if self._sizes[slot] > limits.chunk_bytes and len(self._chunks[slot]) > 1:
            self._split(i)

    def take(self, max_events: int, max_bytes: int) -> list[Entry]:
        """Remove and return the earliest entries (at least one, at most
        ``max_events`` and ``max_bytes``) from the first chunk."""
        chunk = self._load(0)
        n, size = 0, 0
        while n < len(chunk) and n < max_events:
            step = entry_size(chunk[n])
            if n and size + step > max_bytes:
                break
            n, size = n + 1, size + step
        taken, rest = chunk[:n], chunk[n:]
        slot = self.index[0][0]
        self.events -= n
        self.size -= size
        if rest:
            self._chunks[slot] = rest
            self._changed(0, -size)
        else:
            del self.index[0]
            self._chunks.pop(slot, None)
            self._sizes.pop(slot, None)
            self._dirty.discard(slot)
            self._index_bytes = None
        return taken

    def flush(self) -> tuple[dict[int, bytes], list[int]]:
        """Rows to write before the customer row (slot -> chunk) and slots to empty
        after it; the state then counts as stored."""
        in_use = {x[0] for x in self.index}
        taken = self._stored | in_use
        before: dict[int, bytes] = {}
        for x in self.index:
            slot = x[0]
            if slot not in self._dirty:
                continue
            if slot in self._stored:  # copy-on-write: never overwrite a named row
                new = _free(taken)
                taken.add(new)
                self._chunks[new] = self._chunks.pop(slot)
                self._sizes[new] = self._sizes.pop(slot)
                x[0] = slot = new
                self._index_bytes = None
            before[slot] = orjson.dumps(self._chunks[slot])
        now = {x[0] for x in self.index}
        after = sorted(self._stored - now)
        self._stored = now
        self._dirty.clear()
        return before, after

    # --- internals ------------------------------------------------------------------

    def _load(self, i: int) -> list[Entry]:
        slot = self.index[i][0]
        chunk = self._chunks.get(slot)
        if chunk is None:
            stored = self.fetch(slot) if self.fetch is not None else None
            chunk = self._chunks[slot] = list(stored or [])
            self._sizes[slot] = sum(entry_size(x) for x in chunk)
        return chunk

    def _changed(self, i: int, delta: int) -> None:
        slot = self.index[i][0]
        self._sizes[slot] += delta
        self._dirty.add(slot)
        first = entry_key(self._chunks[slot][0])
        if (self.index[i][1], self.index[i][2]) != first:
            self.index[i][1:] = list(first)
            self._index_bytes = None

    def _new_chunk(self, i: int, entries: list[Entry]) -> None:
        slot = _free(self._stored | {x[0] for x in self.index})
        self.index.insert(i, [slot, *entry_key(entries[0])])
        self._chunks[slot] = entries
        self._sizes[slot] = sum(entry_size(x) for x in entries)
        self._dirty.add(slot)
        self._index_bytes = None

    def _split(self, i: int) -> None:
        slot = self.index[i][0]
        chunk = self._chunks[slot]
        half, size, cut = self._sizes[slot] // 2, 0, 0
        while cut < len(chunk) - 1 and size < half:
            size += entry_size(chunk[cut])
            cut += 1
        self._chunks[slot] = chunk[:cut]
        self._sizes[slot] = size
        self._dirty.add(slot)
        self._new_chunk(i + 1, chunk[cut:])


@dataclass(slots=True)
class PendingQueue:
    """A customer's events dated after the clock, earliest first by (time, event id).

    ``head`` (stored in the customer row as ``pending``) always holds the earliest
    entries; the latest beyond the row's share (``limits``) wait in ``spill``
    (stored as ``spill``, with its chunks in overflow rows).  Without limits
    everything stays in the head.
    """

    head: list[Entry] = field(default_factory=list)
    spill: Spill = field(default_factory=Spill)
    # Serialised size of ``head`` (not stored; recomputed after a load).
    _head_bytes: int | None = field(default=None, repr=False, compare=False)

    def __bool__(self) -> bool:
        return bool(self.head)

    def first_time(self) -> int | None:
        """When the earliest waiting event happened (None: nothing waits)."""
        return self.head[0]["t"] if self.head else None

    def head_bytes(self) -> int:
        """Bytes of the entries in the customer row (as :func:`entry_size` counts)."""
        if self._head_bytes is None:
            self._head_bytes = sum(entry_size(p) for p in self.head)
        return self._head_bytes

    def count(self) -> int:
        """Events waiting, in the row and in overflow rows."""
        return len(self.head) + self.spill.events

    def total_bytes(self) -> int:
        """Bytes of every waiting entry (as the hostile-input cap counts them)."""
        return self.head_bytes() + self.spill.size

    def push(self, entry: Entry, limits: PendingLimits | None = None) -> None:
        """Insert, stable by (time, event_id) so equal-time events apply in one order.

        With ``limits``, the latest entries beyond the row's share move to overflow
        rows; without, everything stays in the row."""
        key = entry_key(entry)
        if self.spill and key > self.spill.first_key():
            self.spill.insert(entry, limits or UNLIMITED)
        else:
            lo = bisect.bisect_right(self.head, key, key=entry_key)
            if self._head_bytes is not None:
                self._head_bytes += entry_size(entry)
            self.head.insert(lo, entry)
        if limits is not None:
            self._fit_head(limits)

    def pop(self, limits: PendingLimits | None = None) -> Entry:
        """Remove and return the earliest entry (the head must not be empty)."""
        entry = self.head.pop(0)
        if self._head_bytes is not None:
            self._head_bytes -= entry_size(entry)
        while not self.head and self.spill:
            # The head always holds the earliest waiting event: refill it.
            room = limits or UNLIMITED
            self.head = self.spill.take(
                room.head_events, room.head_bytes - self.spill.index_bytes()
            )
            self._head_bytes = None
            if limits is not None:
                self._fit_head(limits)
        return entry

    def _fit_head(self, limits: PendingLimits) -> None:
        """Move the row's latest entries to the overflow rows until the row's share
        (entries and the overflow index, whose first keys change) fits."""
        while len(self.head) > 1 and self._head_over(limits):
            size = self.head_bytes()
            last = self.head.pop()
            self._head_bytes = size - entry_size(last)
            self.spill.insert(last, limits)

    def _head_over(self, limits: PendingLimits) -> bool:
        if len(self.head) > limits.head_events:
            return True
        room = limits.head_bytes - self.spill.index_bytes()
        # Few enough that even the widest entries fit: no need to measure them.
        return len(self.head) * MAX_ENTRY_BYTES > room and self.head_bytes() > room


def _first(row: list[Any]) -> tuple[int, str]:
    return (row[1], row[2])


def _free(taken: set[int]) -> int:
    slot = 0
    while slot in taken:
        slot += 1
    return slot


def pending_limits(settings: CoreSettings) -> PendingLimits:
    """The row's share of the pending queue and the size of an overflow row, checked
    against the byte budget (docs/budget.md "Byte budget"): however the hostile-input cap
    is filled, the overflow index stays within half the row's pending budget."""
    index = max_index_bytes(settings.max_pending_bytes, settings.pending_chunk_bytes)
    if index > PENDING_BUDGET // 2 or settings.pending_chunk_bytes > PENDING_BUDGET:
        raise ValueError(
            f"max_pending_bytes {settings.max_pending_bytes} with overflow rows of "
            f"{settings.pending_chunk_bytes} bytes could need a {index}-byte index: "
            f"over half of {PENDING_BUDGET}"
        )
    # The row's share: the lifecycle's facts take theirs from it (docs/budget.md).
    return PendingLimits(
        settings.max_pending_events, ROW_PENDING_BUDGET, settings.pending_chunk_bytes
    )
