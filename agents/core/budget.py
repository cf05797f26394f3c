"""The byte budget of one customer (README "Byte budget").

No sequence of inputs can make a customer's table row or one output record
larger than :data:`ROW_BUDGET` / :data:`OUTPUT_BUDGET` (256 KiB, a quarter of the
broker's default 1 MiB ``message.max.bytes``), because every part of the row is
bounded: ids (128 characters), amounts (16 + 15 digits), the named currencies
(:data:`MAX_CURRENCIES`, the rest summed under :data:`OTHER_CURRENCY`), the dedup
memory (:mod:`agents.core.dedup`), the lists in :mod:`agents.core.state`, and the
events waiting in ``pending`` (at most ``max_pending_events`` and
:data:`PENDING_BUDGET` bytes with the index of the overflow rows; the later ones
wait in overflow rows of :data:`PENDING_CHUNK_BUDGET` bytes each, up to the
hostile-input cap :data:`MAX_PENDING_BYTES`: :mod:`agents.core.pending`).

What is not bounded by construction is a row written by an older version (e.g.
thousands of raw pending events): :func:`state_over_budget` says so, and the
engine refuses that customer's new events with ``customer_over_budget`` until
``pending`` has drained.  The processor can also check every encoded row and
record with :func:`row_over_budget` / :func:`output_over_budget` before writing.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson


class HasPending(Protocol):
    """What the budget reads of a customer state (agents.core.state imports this
    module, so it names the shape rather than the class)."""

    @property
    def pending(self) -> list[Any]: ...

    def pending_bytes(self) -> int: ...


ROW_BUDGET = 256 * 1024
OUTPUT_BUDGET = 256 * 1024
# Serialised bytes of the pending events kept in one customer's row, with the
# index of its overflow rows.
PENDING_BUDGET = 128 * 1024
# Entries of one overflow row (a row of the same table, key "p/<slot>/<customer>").
PENDING_CHUNK_BUDGET = 128 * 1024
# The hostile-input cap: bytes of waiting entries per customer, row and overflow
# rows together (about 40,000 purchases or 75,000 sessions with 12-character ids).  Only
# past it is an event dated after the clock refused (pending_overflow).
MAX_PENDING_BYTES = 4 * 1024 * 1024
# Everything in a row but pending is below this (worst case, measured by
# tests/unit/agents/core/test_budget.py with 128-character escaped ids).
FIXED_ROW_BOUND = ROW_BUDGET - PENDING_BUDGET
# Named currencies per customer: the alphabetically smallest MAX_CURRENCIES seen;
# orders in any other currency count as orders, their spend is summed under
# OTHER_CURRENCY (ISO 4217 "no currency"), which is also where XXX itself goes.
MAX_CURRENCIES = 16
OTHER_CURRENCY = "XXX"

# Dead-letter codes of events the engine refuses (see agents.core.engine.Refused).
CODE_CUSTOMER_OVER_BUDGET = "customer_over_budget"
CODE_PENDING_OVERFLOW = "pending_overflow"


def entry_size(entry: dict[str, Any]) -> int:
    """Bytes one pending entry adds to the row (its JSON and a comma)."""
    return len(orjson.dumps(entry)) + 1


# The largest entry validation allows: 128-character ids that JSON escapes to 6
# bytes a character, the longest amount and time.  Below PENDING_BUDGET //
# MAX_ENTRY_BYTES entries, pending cannot be over budget: no need to measure.
_WIDE = "\x01" * 128
MAX_ENTRY_BYTES = entry_size(
    {
        "k": "purchase",
        "e": _WIDE,
        "t": -(2**62),
        "o": _WIDE,
        "a": "9" * 16 + "." + "9" * 31,
        "cur": "XXX",
        "st": "opted_out",
    }
)
SAFE_PENDING_ENTRIES = PENDING_BUDGET // MAX_ENTRY_BYTES


# One overflow index row at its widest: [slot, time, 128-character escaped id].
MAX_INDEX_ROW_BYTES = len(orjson.dumps([999_999, -(2**62), _WIDE])) + 1


def max_index_bytes(cap: int, chunk_bytes: int) -> int:
    """The largest the overflow index can get under ``cap`` bytes of waiting
    entries: a chunk is split in two when it passes ``chunk_bytes`` and only the
    first chunk ever shrinks, so every other holds at least half of it."""
    least = max((chunk_bytes - MAX_ENTRY_BYTES) // 2, 1)
    return (2 + cap // least) * MAX_INDEX_ROW_BYTES + 64


def state_over_budget(state: HasPending) -> bool:
    """True only for a row from an older version whose pending is over budget."""
    if len(state.pending) <= SAFE_PENDING_ENTRIES:
        return False
    return state.pending_bytes() > PENDING_BUDGET


def row_over_budget(encoded: bytes | int) -> bool:
    """An encoded table row (or its length) over :data:`ROW_BUDGET`."""
    return (encoded if isinstance(encoded, int) else len(encoded)) > ROW_BUDGET


def output_over_budget(encoded: bytes | int) -> bool:
    """An encoded output record (or its length) over :data:`OUTPUT_BUDGET`."""
    return (encoded if isinstance(encoded, int) else len(encoded)) > OUTPUT_BUDGET
