"""Send windows in the offline reference: when each firing is decided and sent
(docs/send-windows.md "Deferred firings"), read from the design with the
reference's own code (the brute-force windows of :mod:`agents.offline.windows`,
not the engine's).

Per rule, in time order, over the steps :mod:`agents.offline.timeline` /
:mod:`agents.offline.versions` found due (the ladder itself does not change):

* A step due at D before the backfill cut-over, or of a rule without a window,
  is judged at D as before (no send time, no zone).
* Otherwise the zone is chosen once, at D: the window's fixed zone, else the
  customer's zone in force at D, else the file's default zone; the send time is
  the window's answer for D.  Inside (send time D): judged by the guardrails at D.
  No send time (drop, or beyond ``max_delay``): ``outside_window`` at D, before
  any guardrail.  Later (S): deferred, kept until S.
* At most one deferred firing per rule: a step of the same rule due at D2 < S
  (any step, any anchor) supersedes it at D2 (``superseded``, its send time
  kept), before that step is handled.  A step due at S itself comes after the
  deferred firing is judged.
* A rules switch at Ti in (D, S] that restarts or stops the rule supersedes it at
  Ti, before anything at Ti; an unchanged or pinned rule keeps it.
* At S: the rule's anchor on the facts as of S (None once cancelled) must still
  be the firing's, and the audience must hold at S; else ``cancelled`` at S.
  Otherwise the guardrails judge it at S (agents/offline/reference.py).
* A deferred firing whose S is after ``until`` is undecided.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from agents.core.timeutil import iso
from agents.offline.judgment import OUTCOME_SKIPPED, Firing, Verdict
from agents.offline.rulebook import WindowSpec
from agents.offline.timeline import LadderItem, StageWalk, Timeline
from agents.offline.versions import live_anchor
from agents.offline.windows import Hours, known_zone, read_windows, send_time, zone

OUTCOME_OUTSIDE_WINDOW = "outside_window"
OUTCOME_CANCELLED = "cancelled"
OUTCOME_SUPERSEDED = "superseded"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Timing:
    """When a step that fell due is decided, and how far the window got it."""

    item: LadderItem
    at: int  # the instant it is decided
    send_at: int | None = None  # D inside its window, S deferred; None otherwise
    zone: str | None = None  # the zone its window was read in (None: no window)
    # Decided before any guardrail (outside_window, cancelled, superseded); None: the
    # guardrails judge it at ``at``.
    outcome: str | None = None
    # A deferred firing is decided before the step of its rule due at the same instant.
    deferred: bool = False
    # Superseded at a rules switch: decided before anything at ``at``.
    at_switch: bool = False
    # Its place among the items at ``at`` when not the step's own priority: that of
    # the step that supersedes it, or its rule's in the version in force at S.
    placed: int | None = None

    @property
    def priority(self) -> int:
        return self.item.priority if self.placed is None else self.placed

    @property
    def windowed(self) -> bool:
        return self.zone is not None


def hours(spec: WindowSpec) -> tuple[Hours, ...]:
    return tuple(read_windows(spec.table()))


def zone_for(spec: WindowSpec, due: int, zone_at: Callable[[int], str | None]) -> str:
    """The zone a window is read in for a step due at ``due``: fixed, else the
    customer's at ``due``, else the default."""
    return spec.zone or zone_at(due) or spec.default_zone


def schedule(
    items: Sequence[LadderItem],
    timeline: Timeline,
    stages: StageWalk,
    zone_at: Callable[[int], str | None],
    until: int,
    cut_over: int | None = None,
    kept: Mapping[str, Sequence[tuple[int, bool]]] | None = None,
    priority_at: Callable[[str, int], int | None] | None = None,
) -> tuple[list[Timing], list[Timing]]:
    """The decided steps of one customer (skips left out) and the deferred firings
    still undecided at ``until``.  ``items`` as the ladders give them; ``kept``:
    per rule, what each rules switch did to it (:func:`versioned_ladder`);
    ``priority_at(rule, t)``: the rule's priority in the version in force at t."""
    by_rule: dict[str, list[LadderItem]] = {}
    for item in items:
        by_rule.setdefault(item.rule.name, []).append(item)
    decided: list[Timing] = []
    undecided: list[Timing] = []
    for name, own in by_rule.items():
        switches = (kept or {}).get(name, ())

        def place(t: int, name: str = name) -> int | None:
            return None if priority_at is None else priority_at(name, t)

        left = _rule(own, switches, timeline, stages, zone_at, until, cut_over, decided, place)
        if left is not None:
            undecided.append(left)
    return decided, undecided


def _rule(
    items: list[LadderItem],
    switches: Sequence[tuple[int, bool]],
    timeline: Timeline,
    stages: StageWalk,
    zone_at: Callable[[int], str | None],
    until: int,
    cut_over: int | None,
    out: list[Timing],
    place: Callable[[int], int | None],
) -> Timing | None:
    # What happens to the rule, in time order: a switch at T before the steps at T.
    points: list[tuple[int, int, LadderItem | bool]] = [(t, 0, goes_on) for t, goes_on in switches]
    points += [(_when(item), 1, item) for item in items]
    # A keyed rule's carts due at one instant: by cart id (docs/lifecycle.md "Rules").
    points.sort(key=lambda p: (p[0], p[1], getattr(p[2], "key", None) or ""))
    waiting: Timing | None = None  # the rule's deferred firing
    for t, _, what in points:
        if waiting is not None:
            assert waiting.send_at is not None
            if waiting.send_at < t or (waiting.send_at == t and not isinstance(what, bool)):
                out.append(_at_send(waiting, timeline, stages, place(waiting.at)))
                waiting = None
        if isinstance(what, bool):
            if waiting is not None and not what:
                out.append(_superseded(waiting, t, at_switch=True))
                waiting = None
            continue
        item = what
        if item.superseded_at is not None:
            out.append(Timing(item, item.superseded_at, at_switch=True))
            continue
        if waiting is not None:
            out.append(_superseded(waiting, item.due, at_switch=False, placed=item.priority))
            waiting = None
        if not item.in_audience:
            continue  # not for this customer: no decision
        if item.skipped:
            # Crossed at its anchor: recorded, never sent, no window
            # (docs/prediction.md "The churn_risk rule").
            out.append(Timing(item, item.due, outcome=OUTCOME_SKIPPED))
            continue
        spec = item.rule.send_window
        if spec is None or (cut_over is not None and item.due < cut_over):
            out.append(Timing(item, item.due))
            continue
        zone = zone_for(spec, item.due, zone_at)
        sent = send_time(item.due, zone, hours(spec), spec.policy, spec.max_delay)
        if sent is None:
            out.append(Timing(item, item.due, None, zone, OUTCOME_OUTSIDE_WINDOW))
        elif sent == item.due:
            out.append(Timing(item, item.due, sent, zone))
        else:
            waiting = Timing(item, sent, sent, zone, deferred=True)
    if waiting is None:
        return None
    assert waiting.send_at is not None
    if waiting.send_at <= until:
        out.append(_at_send(waiting, timeline, stages, place(waiting.at)))
        return None
    return waiting


def _when(item: LadderItem) -> int:
    return item.due if item.superseded_at is None else item.superseded_at


def _superseded(waiting: Timing, at: int, *, at_switch: bool, placed: int | None = None) -> Timing:
    return Timing(
        waiting.item,
        at,
        waiting.send_at,
        waiting.zone,
        OUTCOME_SUPERSEDED,
        deferred=True,
        at_switch=at_switch,
        placed=placed,
    )


def _at_send(waiting: Timing, timeline: Timeline, stages: StageWalk, placed: int | None) -> Timing:
    """The deferred firing at its send time: the condition and the audience on the
    facts as of S, else cancelled; the guardrails then judge it at S, where its rule
    stands among the rules in force then (a pinned ladder at the place of its rule's
    priority there)."""
    item = waiting.item
    at = waiting.at
    priority = item.priority if placed is None else placed
    holds = live_anchor(timeline, item.rule, at, item.key) == item.anchor and timeline.in_audience(
        item.rule, at, stages.at(at, priority)
    )
    return Timing(
        item,
        at,
        waiting.send_at,
        waiting.zone,
        None if holds else OUTCOME_CANCELLED,
        deferred=True,
        placed=placed,
    )


# --- zones and outputs ----------------------------------------------------------------


def zone_name(message: Any) -> str | None:
    """A message's ``timezone`` when the pinned ``tzdata`` package has that zone, else
    None (ignored: docs/send-windows.md "The customer's zone").  Read the plain way
    (agents/offline/windows.py): the name must be in the package's list of zones, not
    its ``Factory`` placeholder, and at most 64 characters, and the package's own
    file for it must load."""
    name = message.get("timezone") if isinstance(message, dict) else None
    return name if known_zone(name) else None


def send_fields(send_at: int | None, zone_name_: str) -> dict[str, Any]:
    """``send_at`` (UTC), ``send_zone`` and ``send_local``: the local wall time to the
    second with its offset, RFC 3339 (``2026-03-29T09:00:00+02:00``; an offset of
    seconds, a local mean time of long ago, is cut to the minute, RFC 3339 having
    none), null times for a firing that is not sent (docs/send-windows.md)."""
    local: str | None = None
    if send_at is not None:
        tz = zone(zone_name_)
        assert tz is not None
        when = (_EPOCH + timedelta(microseconds=send_at)).replace(microsecond=0)
        offset = when.astimezone(tz).utcoffset() or timedelta(0)
        minutes = int(offset / timedelta(minutes=1))  # toward zero
        local = when.astimezone(timezone(timedelta(minutes=minutes))).isoformat()
    return {
        "send_at": None if send_at is None else iso(send_at),
        "send_zone": zone_name_,
        "send_local": local,
    }


def send_counts(judged: Iterable[tuple[Firing, Verdict]]) -> dict[str, dict[str, list[int]]]:
    """Per customer and rule, the report's send-window counts (docs/reports.md "Reports"):
    ``[waited, delivered at local hour 0, ..., 23]``.  A firing with a window and a
    send time counts as waited when that is after its due time, whatever its
    outcome, and a delivered one by the local hour of its send time."""
    out: dict[str, dict[str, list[int]]] = {}
    for f, verdict in judged:
        if f.zone is None or f.send_at is None:
            continue
        waited = f.send_at != f.due
        if not waited and not verdict.delivered:
            continue
        row = out.setdefault(f.customer_id, {}).setdefault(f.rule, [0] * 25)
        if waited:
            row[0] += 1
        if verdict.delivered:
            tz = zone(f.zone)
            assert tz is not None
            row[1 + (_EPOCH + timedelta(microseconds=f.send_at)).astimezone(tz).hour] += 1
    return out
