"""The offline reference: nudge decisions computed in batch from a JSONL event file.

This is the oracle the streaming engine is tested against, so it shares none of
the streaming machinery and is written as plainly as possible: read every line,
keep each customer's deduplicated events, sort them by time, walk the ladders.
(Only the JSON form of an outcome is shared: :func:`agents.messages.outcome_record`
renders the conversions this module computes.)

Semantics (the stream implements the same):

* Every non-blank line is validated with :func:`agents.core.validation.validate`,
  with the stream's bounds (the earliest accepted event time among them); an
  invalid line is counted under its error code and skipped.
* Deduplication is per customer, because that is where the stream keeps its
  dedup memory, and runs over the valid events in event-time order (file order
  among equal times), the order in which ``retention replay`` delivers the file:
  an ``event_id`` the customer has sent before is ignored; an order counts once,
  at the ``occurred_at`` of the earliest event carrying its ``order_id``; later
  events with that ``order_id`` are ignored entirely, they are not activity
  either.  With ``arrival_order=True`` the file's own order is used instead (a
  live feed's arrival order, as ``retention produce`` sends it).  Order ids are
  remembered for the customer's whole history with the stream's own filter
  (:mod:`agents.core.dedup`: exact up to 1,024 orders, then a Bloom filter), so a
  false positive drops the same order in both.
* Pending overflow: an event that a stream-clock worker replaying the file in
  event-time order would find with its customer's waiting events at the
  hostile-input cap (see :class:`PendingCap`) is counted as a ``pending_overflow``
  dead letter and left out, as the stream does; its ids are not remembered, so a
  later copy of it is taken like a new event.
* Spend per currency: the 16 alphabetically smallest currency codes of the
  customer keep their own totals; the rest are summed under ``XXX``.
* Activity = counted orders and sessions; consents are not activity.
* ``f`` = earliest order time, ``s`` = second-earliest order time (two orders at
  the same instant give ``s == f``).
* ``second_purchase`` step k is due at ``D = f + th_k`` and fires iff
  ``(s is None or D < s) and D <= until``; its anchor is ``f``.
* ``inactivity``: with ``a_1 < ... < a_n`` the distinct activity times ``>= f``,
  step k of anchor ``a_i`` is due at ``D = a_i + th_k`` and fires iff
  ``(i == n or D < a_{i+1}) and D <= until``. Customers without an order never
  get this rule.
* ``overdue``: with ``o_1 <= ... <= o_n`` the order times, each distinct order
  time ``a`` with at least ``overdue_min_orders`` orders at or before it is an
  anchor; with ``g`` the median gap between consecutive orders among the newest
  32 orders at or before ``a`` (mean of the middle two, floored to a microsecond,
  for an even count), it is due at ``D = a + min(max(floor, int(g * k)), 100 years)`` and fires iff
  no order falls in ``(a, D]`` and ``D <= until``.
* Backfill: with ``backfill_until`` set, firings due before it are not emitted.
* Output order: (due time, customer_id, rule order in config, step).
* Guardrails (:func:`apply_guardrails`), per customer in that order: holdout
  (hash bucket < holdout_percent), opted_out (latest consent at or before D, an
  opt-out winning a tie), min_gap (a delivered firing due in (D - gap, D]),
  frequency_cap (>= cap delivered firings due in (D - window, D]).
* Conversions: a delivered or holdout firing due at D converts on the earliest
  counted order (ties: smaller event_id) with ``D < t <= D + attribution_window``.
* Lifecycle stage: the same small state machine the stream runs, walked over the
  customer's timeline (events at or before a due time come before that firing).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, localcontext
from typing import Any, Protocol

from agents.core import ids
from agents.core.budget import (
    CODE_PENDING_OVERFLOW,
    MAX_CURRENCIES,
    OTHER_CURRENCY,
    entry_size,
)
from agents.core.dedup import OrderFilter
from agents.core.reports import CustomerRow
from agents.core.settings import (
    RULE_INACTIVITY,
    RULE_OVERDUE,
    RULE_SECOND_PURCHASE,
    CoreSettings,
    LadderSettings,
)
from agents.core.state import CountKey, pending_entry
from agents.core.timeutil import (
    MAX_DURATION,
    MICROS_PER_SECOND,
    format_duration,
    iso,
)
from agents.core.validation import ValidationError, validate
from agents.messages import outcome_record
from schemas.records import (
    CONSENT_OPTED_OUT,
    KIND_CONSENT,
    KIND_PURCHASE,
    KIND_SESSION,
    Event,
)

OUTCOME_DELIVERED = "delivered"
OUTCOME_HOLDOUT = "holdout"
OUTCOME_OPTED_OUT = "opted_out"
OUTCOME_MIN_GAP = "min_gap"
OUTCOME_FREQUENCY_CAP = "frequency_cap"
# Order times the stream keeps per customer for the cadence (see agents.core.state).
CADENCE_ORDERS = 32


class ReferenceConfig(Protocol):
    """What the reference reads from :class:`streams.config.Config`."""

    @property
    def core(self) -> CoreSettings: ...

    @property
    def max_message_bytes(self) -> int: ...

    @property
    def future_tolerance(self) -> int: ...

    @property
    def min_event_time(self) -> int: ...


# --- per-customer facts ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CustomerFacts:
    """What one customer's deduplicated events say, times in micros, sorted ascending.

    The basis of the decisions and of the offline reports (TTSP, RPR, CRR).
    """

    customer_id: str
    order_times: tuple[int, ...]
    session_times: tuple[int, ...]
    # (occurred_at, status), by time; ties keep file order.
    consents: tuple[tuple[int, str], ...]
    spend: Decimal
    events: int
    # (occurred_at, event_id, order_id) of each counted order, ascending.
    orders: tuple[tuple[int, str, str], ...] = ()
    # (occurred_at, event_id) of each counted session, ascending.
    sessions: tuple[tuple[int, str], ...] = ()
    spend_by_currency: tuple[tuple[str, Decimal, int], ...] = ()  # currency, amount, orders

    @property
    def order_count(self) -> int:
        return len(self.order_times)

    @property
    def first_order(self) -> int | None:
        return self.order_times[0] if self.order_times else None

    @property
    def second_order(self) -> int | None:
        return self.order_times[1] if len(self.order_times) > 1 else None

    @property
    def last_order(self) -> int | None:
        return self.order_times[-1] if self.order_times else None

    @property
    def last_session(self) -> int | None:
        return self.session_times[-1] if self.session_times else None

    @property
    def last_activity(self) -> int | None:
        candidates = [t for t in (self.last_order, self.last_session) if t is not None]
        return max(candidates) if candidates else None

    @property
    def ttsp(self) -> int | None:
        """Time to second purchase in micros (0 for two orders at the same instant)."""
        first, second = self.first_order, self.second_order
        return None if first is None or second is None else second - first

    def activity_times(self) -> list[int]:
        """Distinct activity times (orders and sessions), ascending."""
        return sorted(set(self.order_times) | set(self.session_times))


@dataclass(slots=True)
class _CustomerLog:
    """Accumulates one customer's accepted events in file order."""

    customer_id: str
    event_ids: set[str] = field(default_factory=set)
    # Every order id taken in, with the stream's own bounded filter, so that a
    # false positive there is one here too (agents.core.dedup).
    order_filter: OrderFilter = field(default_factory=OrderFilter)
    # order_id -> (t, event_id, currency, amount) of the first event carrying it
    orders: dict[str, tuple[int, str, str, Decimal]] = field(default_factory=dict)
    sessions: list[tuple[int, str]] = field(default_factory=list)
    consents: list[tuple[int, str]] = field(default_factory=list)
    events: int = 0

    def facts(self, until: int | None = None) -> CustomerFacts:
        """The facts, counting only events dated at or before ``until`` if given."""

        def keep(t: int) -> bool:
            return until is None or t <= until

        orders = sorted((t, e, o) for o, (t, e, _, _) in self.orders.items() if keep(t))
        spend: dict[str, tuple[Decimal, int]] = {}
        with localcontext(prec=80):  # exact, as in the stream
            for t, _, currency, amount in self.orders.values():
                if keep(t):
                    total, n = spend.get(currency, (Decimal(0), 0))
                    spend[currency] = (total + amount, n + 1)
            spend = _fold_currencies(spend)
        return CustomerFacts(
            customer_id=self.customer_id,
            order_times=tuple(t for t, _, _ in orders),
            session_times=tuple(sorted(t for t, _ in self.sessions if keep(t))),
            consents=tuple(sorted((c for c in self.consents if keep(c[0])), key=lambda c: c[0])),
            spend=sum((a for a, _ in spend.values()), Decimal(0)),
            events=self.events,
            orders=tuple(orders),
            sessions=tuple(sorted(x for x in self.sessions if keep(x[0]))),
            spend_by_currency=tuple((c, a, n) for c, (a, n) in sorted(spend.items())),
        )


def _fold_currencies(spend: dict[str, tuple[Decimal, int]]) -> dict[str, tuple[Decimal, int]]:
    """The alphabetically smallest MAX_CURRENCIES codes keep their own totals; every
    other currency (and XXX itself) is summed under OTHER_CURRENCY."""
    named = sorted(c for c in spend if c != OTHER_CURRENCY)[:MAX_CURRENCIES]
    out: dict[str, tuple[Decimal, int]] = {c: spend[c] for c in named}
    for c, (total, n) in spend.items():
        if c not in named:
            t0, n0 = out.get(OTHER_CURRENCY, (Decimal(0), 0))
            out[OTHER_CURRENCY] = (t0 + total, n0 + n)
    return out


# --- firings -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Firing:
    """One ladder step whose condition held at its due time (micros everywhere)."""

    customer_id: str
    rule: str
    rule_order: int
    step: int
    threshold: int
    anchor: int
    due: int

    def sort_key(self) -> tuple[int, str, int, int]:
        return (self.due, self.customer_id, self.rule_order, self.step)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the guardrails made of a firing."""

    delivered: bool
    outcome: str  # "delivered" or a suppression reason code
    holdout: bool


DELIVERED = Verdict(delivered=True, outcome=OUTCOME_DELIVERED, holdout=False)


def second_purchase_firings(
    facts: CustomerFacts, ladder: LadderSettings, rule_order: int, until: int
) -> list[Firing]:
    """No second order ``th_k`` after the first: fires while no second order exists at D."""
    first, second = facts.first_order, facts.second_order
    if first is None:
        return []
    out: list[Firing] = []
    for step, threshold in enumerate(ladder.steps, start=1):
        due = first + threshold
        if (second is None or due < second) and due <= until:
            out.append(
                Firing(facts.customer_id, ladder.rule, rule_order, step, threshold, first, due)
            )
    return out


def inactivity_firings(
    facts: CustomerFacts, ladder: LadderSettings, rule_order: int, until: int
) -> list[Firing]:
    """No activity for ``th_k``: each activity from the first order on restarts the ladder."""
    first = facts.first_order
    if first is None:
        return []
    anchors = [t for t in facts.activity_times() if t >= first]
    out: list[Firing] = []
    for i, anchor in enumerate(anchors):
        following = anchors[i + 1] if i + 1 < len(anchors) else None
        for step, threshold in enumerate(ladder.steps, start=1):
            due = anchor + threshold
            if (following is None or due < following) and due <= until:
                out.append(
                    Firing(facts.customer_id, ladder.rule, rule_order, step, threshold, anchor, due)
                )
    return out


def overdue_firings(
    facts: CustomerFacts, ladder: LadderSettings, rule_order: int, until: int, core: CoreSettings
) -> list[Firing]:
    """No order for k x the customer's median gap (at least the floor) after their last."""
    times = list(facts.order_times)
    out: list[Firing] = []
    for anchor in sorted(set(times)):
        upto = [t for t in times if t <= anchor]
        if len(upto) < core.overdue_min_orders:
            continue
        kept = upto[-CADENCE_ORDERS:]
        gaps = sorted(kept[i + 1] - kept[i] for i in range(len(kept) - 1))
        n = len(gaps)
        if n == 0:
            continue
        mid = gaps[n // 2] if n % 2 == 1 else (gaps[n // 2 - 1] + gaps[n // 2]) // 2
        threshold = min(max(core.overdue_floor, int(mid * core.overdue_multiplier)), MAX_DURATION)
        due = anchor + threshold
        following = next((t for t in times if t > anchor), None)
        if (following is None or due < following) and due <= until:
            out.append(
                Firing(facts.customer_id, ladder.rule, rule_order, 1, threshold, anchor, due)
            )
    return out


RuleFunction = Callable[[CustomerFacts, LadderSettings, int, int, CoreSettings], list[Firing]]

RULES: dict[str, RuleFunction] = {
    RULE_SECOND_PURCHASE: lambda f, lad, order, until, _: second_purchase_firings(
        f, lad, order, until
    ),
    RULE_INACTIVITY: lambda f, lad, order, until, _: inactivity_firings(f, lad, order, until),
    RULE_OVERDUE: overdue_firings,
}


def _opted_out_at(consents: tuple[tuple[int, str], ...], due: int) -> bool:
    latest: tuple[int, bool] | None = None
    for t, status in consents:
        if t <= due:
            key = (t, status == CONSENT_OPTED_OUT)
            latest = key if latest is None or key > latest else latest
    return latest is not None and latest[1]


def apply_guardrails(
    firings: list[Firing], facts: dict[str, CustomerFacts], core: CoreSettings
) -> list[tuple[Firing, Verdict]]:
    """Give every firing (already in output order) its verdict (docs/guardrails.md "Guardrails")."""
    delivered: dict[str, list[int]] = {}
    out: list[tuple[Firing, Verdict]] = []
    for f in firings:
        holdout = ids.holdout_bucket(f.customer_id, core.holdout_salt) < core.holdout_percent
        sent = delivered.setdefault(f.customer_id, [])
        if holdout:
            outcome = OUTCOME_HOLDOUT
        elif _opted_out_at(facts[f.customer_id].consents, f.due):
            outcome = OUTCOME_OPTED_OUT
        elif sent and f.due - sent[-1] < core.min_gap:
            outcome = OUTCOME_MIN_GAP
        elif len([t for t in sent if t > f.due - core.frequency_window]) >= core.frequency_cap:
            outcome = OUTCOME_FREQUENCY_CAP
        else:
            outcome = OUTCOME_DELIVERED
            sent.append(f.due)
        out.append((f, Verdict(outcome == OUTCOME_DELIVERED, outcome, holdout)))
    return out


@dataclass(frozen=True, slots=True)
class Conversion:
    """The first order within the attribution window after a delivered/holdout firing."""

    firing: Firing
    group: str
    converted_at: int
    order_id: str

    # The firing's side, named as agents.messages.outcome_record reads a conversion.
    @property
    def customer_id(self) -> str:
        return self.firing.customer_id

    @property
    def rule(self) -> str:
        return self.firing.rule

    @property
    def step(self) -> int:
        return self.firing.step

    @property
    def anchor_at(self) -> int:
        return self.firing.anchor

    @property
    def due_at(self) -> int:
        return self.firing.due

    @property
    def trigger_id(self) -> str:
        return ids.trigger_id(self.customer_id, self.rule, self.step, self.anchor_at)

    @property
    def hours_to_convert(self) -> float:
        # A conversion is strictly after its due time, so the smallest figure is 0.001.
        hours = round((self.converted_at - self.due_at) / (3600 * MICROS_PER_SECOND), 3)
        return hours if hours > 0 else 0.001


def conversions(
    judged: list[tuple[Firing, Verdict]], facts: dict[str, CustomerFacts], core: CoreSettings
) -> list[Conversion]:
    out: list[Conversion] = []
    for f, verdict in judged:
        if verdict.outcome not in (OUTCOME_DELIVERED, OUTCOME_HOLDOUT):
            continue
        window_end = f.due + core.attribution_window
        hit = next(
            ((t, o) for t, _, o in facts[f.customer_id].orders if f.due < t <= window_end), None
        )
        if hit is not None:
            out.append(Conversion(f, verdict.outcome, hit[0], hit[1]))
    return out


def outcome_dict(c: Conversion, core: CoreSettings) -> dict[str, Any]:
    """The JSON form of one conversion, field for field what retention.outcomes carries
    (the record the customer agent sends, built by the same function)."""
    return outcome_record(c, attribution_window=core.attribution_window).to_dict()


def lifecycle_stage(facts: CustomerFacts, inactivity: list[Firing], steps: int) -> str:
    """Walk the customer's timeline through the lifecycle stages (docs/reports.md "Reports").

    prospect -> new (first order) -> repeat (second order); an inactivity step
    makes the customer at_risk, its last step lapsed; activity after that brings
    them back (new/repeat from at_risk, reactivated from lapsed).
    """
    timeline: list[tuple[int, int, str, str]] = []
    for t, e, _ in facts.orders:
        timeline.append((t, 0, e, "order"))
    for t, e in facts.sessions:
        timeline.append((t, 0, e, "session"))
    for f in inactivity:
        # A step due at D comes after every event at D (sort key 1 > 0).
        timeline.append((f.due, 1, "", "last" if f.step == steps else "step"))
    stage, orders, last_activity = "prospect", 0, None
    for t, _, _, kind in sorted(timeline):
        if kind == "order":
            orders += 1
            if stage == "prospect":
                stage = "new"
            if stage == "new" and orders >= 2:
                stage = "repeat"
        if kind in ("order", "session"):
            if last_activity is None or t > last_activity:
                last_activity = t
                if stage == "lapsed":
                    stage = "reactivated"
                elif stage == "at_risk":
                    stage = "repeat" if orders >= 2 else "new"
        elif kind == "step":
            stage = "at_risk"
        elif kind == "last":
            stage = "lapsed"
    return stage


def report_rows(
    facts: dict[str, CustomerFacts],
    all_firings: list[Firing],
    judged: list[tuple[Firing, Verdict]],
    converted: list[Conversion],
    core: CoreSettings,
) -> list[CustomerRow]:
    """One :class:`CustomerRow` per customer, built from the file alone."""
    inactivity: dict[str, list[Firing]] = {}
    for f in all_firings:
        if f.rule == RULE_INACTIVITY:
            inactivity.setdefault(f.customer_id, []).append(f)
    decided: dict[str, dict[CountKey, int]] = {}
    for f, v in judged:
        key = CountKey(f.rule, f.step, v.outcome)
        counts = decided.setdefault(f.customer_id, {})
        counts[key] = counts.get(key, 0) + 1
    won: dict[str, dict[CountKey, int]] = {}
    for c in converted:
        key = CountKey(c.firing.rule, c.firing.step, c.group)
        counts = won.setdefault(c.firing.customer_id, {})
        counts[key] = counts.get(key, 0) + 1
    rows = []
    steps = len(core.inactivity.steps)
    for cid, fx in facts.items():
        spans: list[list[int]] = []
        for t in fx.order_times:
            if spans and t <= spans[-1][1]:
                spans[-1][1] = t + core.active_window
            else:
                spans.append([t, t + core.active_window])
        rows.append(
            CustomerRow(
                customer_id=cid,
                orders=fx.order_count,
                first_order_at=fx.first_order,
                second_order_at=fx.second_order,
                spend={c: format(a, "f") for c, a, _ in fx.spend_by_currency},
                order_currencies={c: n for c, _, n in fx.spend_by_currency},
                active_spans=tuple((a, b) for a, b in spans),
                stage=lifecycle_stage(fx, inactivity.get(cid, []), steps),
                decision_counts=decided.get(cid, {}),
                conversion_counts=won.get(cid, {}),
            )
        )
    return rows


def decision_dict(firing: Firing, verdict: Verdict) -> dict[str, Any]:
    """The JSON form of one decision, as ``retention report --decisions`` prints it."""
    return {
        "customer_id": firing.customer_id,
        "rule": firing.rule,
        "step": firing.step,
        "threshold": format_duration(timedelta(microseconds=firing.threshold)),
        "threshold_seconds": firing.threshold // MICROS_PER_SECOND,
        "anchor_at": iso(firing.anchor),
        "due_at": iso(firing.due),
        "trigger_id": ids.trigger_id(firing.customer_id, firing.rule, firing.step, firing.anchor),
        "delivered": verdict.delivered,
        "outcome": verdict.outcome,
        "holdout": verdict.holdout,
    }


# --- pending overflow --------------------------------------------------------------


class PendingCap:
    """Which events a stream-clock worker refuses with ``pending_overflow``, under
    the clock of a time-ordered replay.

    Replayed in event-time order, an event at t finds the clock at t - allowed
    lateness, so the customer's earlier events dated after that still wait; the
    event is refused when their entries plus its own would pass
    ``max_pending_bytes`` (the hostile-input cap, docs/budget.md "Byte budget"), however
    the stream stores them (its row and overflow rows are one queue here).
    """

    def __init__(self, core: CoreSettings) -> None:
        self.cap = core.max_pending_bytes
        self.lateness = core.stream_allowed_lateness
        # customer -> heap of (time, size) of the events still waiting, and their bytes
        self.waiting: dict[str, tuple[list[tuple[int, int]], list[int]]] = {}

    def refuses(self, event: Event) -> bool:
        """Whether ``event`` is refused; if not, it counts as waiting from now on."""
        if self.lateness <= 0:
            return False  # the clock is the event's own time: nothing waits
        heap, total = self.waiting.setdefault(event.customer_id, ([], [0]))
        clock = event.occurred_at - self.lateness
        while heap and heap[0][0] <= clock:
            total[0] -= heapq.heappop(heap)[1]
        size = entry_size(pending_entry(event))
        if total[0] + size > self.cap:
            return True
        heapq.heappush(heap, (event.occurred_at, size))
        total[0] += size
        return False


# --- the whole file ----------------------------------------------------------------


@dataclass(slots=True)
class ReferenceResult:
    """Decisions and counts for one event file."""

    decisions: list[dict[str, Any]]
    firings: list[tuple[Firing, Verdict]]
    outcomes: list[dict[str, Any]]
    rows: list[CustomerRow]
    dead_letters: dict[str, int]
    events: int  # valid events that changed something (after both kinds of dedup)
    duplicates: int  # valid lines whose event_id the customer had sent before
    order_retries: int  # valid purchases with a new event_id for an order already counted
    customers: int
    facts: dict[str, CustomerFacts]
    until: int | None  # the evaluation horizon used (None: the file had no valid event)
    lines: int  # non-blank lines read


def _settings(cfg: ReferenceConfig | CoreSettings) -> tuple[CoreSettings, int, int, int]:
    """The core settings and the input bounds: message size, future tolerance and
    the earliest accepted event time (docs/time.md "Time")."""
    if isinstance(cfg, CoreSettings):
        # The input limits' defaults live in the one config object; streams.config is
        # plain Python (no Faust), so importing it keeps this module pure.
        from streams.config import Config

        defaults = Config(core=cfg)
        return cfg, defaults.max_message_bytes, defaults.future_tolerance, defaults.min_event_time
    return cfg.core, cfg.max_message_bytes, cfg.future_tolerance, cfg.min_event_time


def compute_decisions(
    lines: Iterable[bytes],
    cfg: ReferenceConfig | CoreSettings,
    *,
    until: int | None = None,
    now: int | None = None,
    arrival_order: bool = False,
) -> ReferenceResult:
    """Read raw JSONL lines and compute every decision due at or before ``until``.

    ``until`` (micros) defaults to the latest ``occurred_at`` of any valid line;
    ``now`` (micros) is the processor clock for the future-timestamp check and
    defaults to the wall clock.  Duplicates (an ``event_id`` or ``order_id`` seen
    before) are resolved in event-time order, file order among equal times, as
    ``retention replay`` feeds the file; ``arrival_order=True`` resolves them in
    file order instead, for a file that is the arrival order of a live feed (what
    ``retention produce`` sends as it is).
    """
    core, max_bytes, future_tolerance, earliest = _settings(cfg)
    if now is None:
        now = time.time_ns() // 1000
    logs: dict[str, _CustomerLog] = {}
    dead_letters: dict[str, int] = {}
    duplicates = order_retries = events = read = 0
    latest: int | None = None
    valid: list[Event] = []  # in file order
    for raw in lines:
        line = raw.rstrip(b"\r\n")
        if not line.strip():
            continue
        read += 1
        try:
            event = validate(
                line,
                now=now,
                max_bytes=max_bytes,
                future_tolerance=future_tolerance,
                earliest=earliest,
            )
        except ValidationError as exc:
            dead_letters[exc.code] = dead_letters.get(exc.code, 0) + 1
            continue
        if latest is None or event.occurred_at > latest:
            latest = event.occurred_at
        if event.customer_id not in logs:
            logs[event.customer_id] = _CustomerLog(event.customer_id)
        valid.append(event)
    if not arrival_order:
        # Dedup in the order ``retention replay`` delivers the file: by event time,
        # file order among equal times (a stable sort), so the result does not
        # depend on how the file's lines are ordered (docs/time.md "Time").
        valid.sort(key=lambda e: e.occurred_at)
    taken: list[Event] = []  # in dedup order, after both kinds of dedup and the cap
    cap = PendingCap(core)
    for event in valid:
        log = logs[event.customer_id]
        if event.event_id in log.event_ids:
            duplicates += 1
            continue
        if event.kind == KIND_PURCHASE:
            assert event.order_id is not None
            if event.order_id in log.order_filter:
                log.event_ids.add(event.event_id)  # a retry of a counted order
                order_retries += 1
                continue
        if cap.refuses(event):
            # A dead letter; its ids are not remembered (a re-send is new).
            dead_letters[CODE_PENDING_OVERFLOW] = dead_letters.get(CODE_PENDING_OVERFLOW, 0) + 1
            continue
        log.event_ids.add(event.event_id)
        if event.kind == KIND_PURCHASE:
            assert event.order_id is not None
            log.order_filter.add(event.order_id)
        taken.append(event)
    for event in taken:
        log = logs[event.customer_id]
        if event.kind == KIND_PURCHASE:
            assert event.order_id is not None and event.amount is not None
            log.orders[event.order_id] = (
                event.occurred_at,
                event.event_id,
                event.currency or "XXX",
                Decimal(event.amount),
            )
        elif event.kind == KIND_SESSION:
            log.sessions.append((event.occurred_at, event.event_id))
        elif event.kind == KIND_CONSENT:
            assert event.status is not None
            log.consents.append((event.occurred_at, event.status))
        log.events += 1
        events += 1

    facts = {customer_id: log.facts() for customer_id, log in logs.items()}
    horizon = latest if until is None else until
    firings: list[Firing] = []
    if horizon is not None:
        for rule_order, ladder in enumerate(core.ladders()):
            rule = RULES.get(ladder.rule)
            if rule is None:
                continue
            for customer in facts.values():
                firings.extend(rule(customer, ladder, rule_order, horizon, core))
    every_firing = list(firings)
    if core.backfill_until is not None:
        cut_over = core.backfill_until
        # Backfill loads history without firing: these never happened, so they
        # must not count toward any guardrail either.
        firings = [f for f in firings if f.due >= cut_over]
    firings.sort(key=Firing.sort_key)
    judged = apply_guardrails(firings, facts, core)
    # Conversions and report rows as of the horizon: an event after it has not
    # happened yet from the report's point of view.
    seen = (
        {cid: log.facts(until=horizon) for cid, log in logs.items()}
        if horizon is not None
        else facts
    )
    converted = conversions(judged, seen, core)
    return ReferenceResult(
        decisions=[decision_dict(f, v) for f, v in judged],
        firings=judged,
        outcomes=[outcome_dict(c, core) for c in converted],
        rows=report_rows(seen, every_firing, judged, converted, core),
        dead_letters=dict(sorted(dead_letters.items())),
        events=events,
        duplicates=duplicates,
        order_retries=order_retries,
        customers=len(facts),
        facts=facts,
        until=horizon,
        lines=read,
    )
