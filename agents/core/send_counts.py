"""Lifetime counts of a customer's firings with a send window, for the reports
(docs/send-windows.md "Outputs"): per rule, how many waited for their window and the
delivered ones by the local hour (0-23) they were sent at.

Kept in the row beside the decision counts (``CustomerState.send_counts``, row key
``sc``, omitted when empty, so rows without windows are unchanged) as
``{rule: [deferred, hour 0, ..., hour 23]}``: at most 25 small integers per rule
with a window, whatever the customer's history.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping

from agents.core.guardrails import OUTCOME_DELIVERED
from agents.core.timeutil import MICROS_PER_DAY, MICROS_PER_SECOND
from agents.core.windows import utc_offset
from agents.core.zones import load_zone

HOURS = 24
WIDTH = 1 + HOURS  # [deferred, hour 0 .. hour 23]
_HOUR = 3600 * MICROS_PER_SECOND

SendCounts = MutableMapping[str, list[int]]


def local_hour(send_at: int, zone: str) -> int:
    """The local hour (0-23) of instant ``send_at`` in ``zone`` (UTC if unknown:
    the engine only chooses zones the pinned tzdata has)."""
    tz = load_zone(zone)
    local = send_at + (0 if tz is None else utc_offset(send_at, tz))
    return (local % MICROS_PER_DAY) // _HOUR


def count_send(
    counts: SendCounts,
    *,
    rule: str,
    outcome: str,
    due_at: int,
    send_at: int | None,
    zone: str | None,
) -> None:
    """Count one decided firing: nothing without a window (``zone`` None) or when
    dropped (no ``send_at``); a deferral when it waited (``send_at`` after
    ``due_at``, whatever the outcome); a delivered nudge by its local send hour."""
    if zone is None or send_at is None:
        return
    waited = send_at != due_at
    delivered = outcome == OUTCOME_DELIVERED
    if not (waited or delivered):
        return
    row = counts.get(rule)
    if row is None:
        row = counts[rule] = [0] * WIDTH
    if waited:
        row[0] += 1
    if delivered:
        row[1 + local_hour(send_at, zone)] += 1


def add_counts(into: SendCounts, counts: Mapping[str, Iterable[int]]) -> None:
    """Add one customer's (or one worker's) counts."""
    for rule, row in counts.items():
        total = into.get(rule)
        if total is None:
            total = into[rule] = [0] * WIDTH
        for i, n in enumerate(row):
            total[i] += n
