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
* The rules are a rules file's (``rules=``; docs/rules.md), read with this
  package's own code (:mod:`agents.offline.rulebook`), or today's three rules
  from the settings.  Each customer's timeline is walked per rule
  (:meth:`agents.offline.timeline.Timeline.ladder`): the anchor as of each
  instant (first_order, last_order, last_activity, last_session, existing from
  ``min_orders`` orders); when it moves, the ladder starts again at step 1.
  Step k of anchor A is due at D = A + threshold (fixed, or max(floor, k x the
  median gap between the newest 32 orders as of D), at most 100 years) and is
  decided on the facts as of D (events with occurred_at <= D): a cancelling
  event after the anchor by D ends the ladder until the anchor moves (for
  first_order and ``purchase``, any second order, even at the same instant);
  otherwise the step is done, and it fires when the audience holds at D, else
  it is skipped without a decision.  Today's rules read so: ``second_purchase``
  first_order, cancel on purchase; ``inactivity`` last_activity from the first
  order; ``overdue`` one cadence step after the last order, from
  ``overdue_min_orders`` orders.
* churn_risk (:mod:`agents.offline.churn`; docs/prediction.md "The churn_risk rule"): a
  ``p_alive_below = p`` step after the last order A is due when P(alive), on the
  file's ``[model]`` and the customer's orders as of A (x repeat UTC order days,
  first and last order), falls to p, rounded up to the whole minute; already at or
  below p at A, it is a ``skipped`` decision at A when the audience holds there
  (never sent, no window, no guardrail, not counted) and the ladder moves on; BG/NBD
  with x = 0 has nothing due until the next order.  A new ``[model]`` is a new
  rule version: a restart at the switch supersedes the steps due by then.
* Backfill: with ``backfill_until`` set, firings due before it are not emitted.
* Send windows (:mod:`agents.offline.deferral`; docs/send-windows.md): a firing
  of a rule with a window is sent at its due time when inside it, else dropped
  (``outside_window``) or deferred to its send time S and judged there (its
  condition and audience at S, else ``cancelled``; superseded by its rule's next
  step due before S or by a rules switch that restarts or stops the rule); still
  waiting at the horizon, it is undecided (``ReferenceResult.undecided``).
* Output order: (decision time, customer_id, priority, step): the due time, or
  the send time of a deferred firing.
* Rule changes (``changes=``, :mod:`agents.offline.versions`; docs/rules.md
  "Changing rules"): each rule follows the version in force, or the one its
  ladder is pinned to; at a switch a restarted ladder's steps due by then come
  out as ``superseded`` decisions (no nudge: no guardrail, no conversion),
  emitted at the switch before anything due then; guardrails are those in force
  at each due time, and so is which rules' deliveries are no pressure (the rules
  transactional in that version).
* Guardrails (:func:`apply_guardrails`), per customer in that order, at the
  firing's send time S (its due time unless deferred): holdout (hash bucket <
  holdout_percent), opted_out (latest consent at or before S, an opt-out winning
  a tie), outranked (arbitration: a non-transactional firing with a lower
  priority number sent at the same S came first), min_gap (a delivered firing
  sent in (S - gap, S]), frequency_cap (>= cap delivered firings sent in
  (S - window, S]).  A transactional firing skips holdout, outranked, gap and cap
  (its ``holdout`` reads false) and does not count toward them.
* Conversions: a delivered or holdout firing sent at S converts on the earliest
  counted order (ties: smaller event_id) with ``S < t <= S + attribution_window``.
* The lifecycle (:mod:`agents.offline.lifecycle`, whose docstring says each choice;
  docs/lifecycle.md): sign-ups, views, carts and cancellations are kept per customer
  and read as of each instant; orders are net of cancellations (a placed order stays
  activity and can still convert); anchors ``signup``, ``last_view`` and ``cart``
  (one ladder per kept cart, its trigger id with the cart id, items at one instant
  by priority then cart id), steps ``{ order = k }`` and ``{ anniversary = n }``.
  A step made due by an event after its nominal time (a cancellation bringing a
  ladder back, an anchor moved into the past) is due at that event.  The context of
  a lifecycle rule's decision is read when it is decided.  A view or cart rule's
  firings convert only while among its newest steps (x 3 carts) firings
  (docs/lifecycle.md "Attribution"); rules changes restart a cart rule cart by cart.
* Lifecycle stage (:class:`agents.offline.timeline.StageWalk`): prospect -> new
  -> repeat from the orders; at last_activity + at_risk_after at_risk, at
  last_activity + lapsed_after lapsed; activity brings the customer back.  A
  change due at D follows the events at D and is seen by the firings at D with
  a priority number above the lifecycle's.  Without a rules file the inactivity
  ladder's first and last steps are the two spans (none if it is switched off).
"""

from __future__ import annotations

import dataclasses
import heapq
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, localcontext
from typing import Any, Protocol

import orjson

from agents.core.budget import (
    CODE_PENDING_OVERFLOW,
    MAX_CURRENCIES,
    MAX_RECOVERED_CURRENCIES,
    OTHER_CURRENCY,
    entry_size,
)
from agents.core.dedup import OrderFilter
from agents.core.reports import CustomerRow
from agents.core.settings import CoreSettings
from agents.core.state import CountKey, pending_entry
from agents.core.timeutil import (
    MICROS_PER_SECOND,
    format_duration,
    iso,
)
from agents.core.validation import ValidationError, validate
from agents.messages import outcome_record
from agents.offline.deferral import Timing, schedule, send_counts, send_fields, zone_name
from agents.offline.judgment import (
    Conversion,
    Firing,
    Verdict,
    apply_guardrails,
    conversions,
    reason_text,
)
from agents.offline.lifecycle import MAX_CARTS, History, Orders, trigger_id
from agents.offline.rulebook import (
    ANCHOR_CART,
    ANCHOR_LAST_VIEW,
    Anniversary,
    OrderStep,
    Rulebook,
    legacy_rulebook,
    read_rules,
)
from agents.offline.timeline import LadderItem, StageWalk, Timeline
from agents.offline.versions import Versions, versioned_ladder
from schemas.records import (
    KIND_CANCEL,
    KIND_CART,
    KIND_CONSENT,
    KIND_PURCHASE,
    KIND_SESSION,
    KIND_SIGNUP,
    KIND_VIEW,
    Event,
)

# The lifecycle's kinds (docs/lifecycle.md): kept per customer for its facts.
LIFECYCLE_KINDS = (KIND_SIGNUP, KIND_VIEW, KIND_CART, KIND_CANCEL)


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
    # (occurred_at, currency, amount) of each counted order, ascending.
    order_spend: tuple[tuple[int, str, Decimal], ...] = ()
    # (occurred_at, zone name) of each counted event with a zone tzdata knows, ascending.
    zones: tuple[tuple[int, str], ...] = ()
    # The lifecycle's facts through time (agents/offline/lifecycle.py), and the net
    # order facts as of these facts' horizon when a cancellation applies (None: the
    # placed orders are the net ones).
    history: History | None = None
    net: Orders | None = None

    def zone_at(self, t: int) -> str | None:
        """The customer's zone in force at ``t``: the zone of the newest event dated at
        or before it, the smallest name among events at that instant
        (docs/send-windows.md "The customer's zone")."""
        dated = [z for z in self.zones if z[0] <= t]
        if not dated:
            return None
        newest = max(when for when, _ in dated)
        return min(name for when, name in dated if when == newest)

    @property
    def order_count(self) -> int:
        """Orders net of cancellations (docs/lifecycle.md "Cancellations")."""
        return len(self.order_times) if self.net is None else self.net.count

    @property
    def first_order(self) -> int | None:
        if self.net is not None:
            return self.net.first
        return self.order_times[0] if self.order_times else None

    @property
    def second_order(self) -> int | None:
        if self.net is not None:
            return self.net.second
        return self.order_times[1] if len(self.order_times) > 1 else None

    @property
    def last_order(self) -> int | None:
        if self.net is not None:
            return self.net.last
        return self.order_times[-1] if self.order_times else None

    @property
    def last_placed(self) -> int | None:
        """The newest placed order (activity: a cancellation does not undo it)."""
        return self.order_times[-1] if self.order_times else None

    @property
    def last_session(self) -> int | None:
        return self.session_times[-1] if self.session_times else None

    @property
    def last_activity(self) -> int | None:
        candidates = [t for t in (self.last_placed, self.last_session) if t is not None]
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
    # order_id -> the amount's text as the first event carrying it gave it (what an
    # outcome/1 names: docs/reports.md "Recovered revenue")
    amount_text: dict[str, str] = field(default_factory=dict)
    sessions: list[tuple[int, str]] = field(default_factory=list)
    consents: list[tuple[int, str]] = field(default_factory=list)
    zones: list[tuple[int, str]] = field(default_factory=list)
    events: int = 0
    # Purchases and the lifecycle's events, as taken (agents/offline/lifecycle.py).
    life: list[Event] = field(default_factory=list)

    def facts(self, until: int | None = None) -> CustomerFacts:
        """The facts, counting only events dated at or before ``until`` if given."""

        def keep(t: int) -> bool:
            return until is None or t <= until

        orders = sorted((t, e, o) for o, (t, e, _, _) in self.orders.items() if keep(t))
        # Time order (a file read in arrival order is folded as the stream does).
        history = History(sorted(self.life, key=lambda e: e.occurred_at))
        net = history.orders(until) if history.has_cancels else None
        spend: dict[str, tuple[Decimal, int]] = {}
        with localcontext(prec=80):  # exact, as in the stream
            if net is not None:
                counts = dict(net.currencies)
                spend = {c: (a, counts.get(c, 0)) for c, a in net.spend}
            else:
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
            order_spend=tuple(sorted((t, c, a) for t, _, c, a in self.orders.values() if keep(t))),
            zones=tuple(sorted(z for z in self.zones if keep(z[0]))),
            history=history,
            net=net,
        )


def _fold_currencies(
    spend: dict[str, tuple[Decimal, int]], keep: int = MAX_CURRENCIES
) -> dict[str, tuple[Decimal, int]]:
    """The alphabetically smallest ``keep`` codes keep their own totals; every other
    currency (and XXX itself) is summed under OTHER_CURRENCY."""
    named = sorted(c for c in spend if c != OTHER_CURRENCY)[:keep]
    out: dict[str, tuple[Decimal, int]] = {c: spend[c] for c in named}
    for c, (total, n) in spend.items():
        if c not in named:
            t0, n0 = out.get(OTHER_CURRENCY, (Decimal(0), 0))
            out[OTHER_CURRENCY] = (t0 + total, n0 + n)
    return out


# --- firings --------------------------------------------------------------------


def customer_firings(
    facts: CustomerFacts,
    book: Rulebook,
    until: int,
    versions: Versions | None = None,
    cut_over: int | None = None,
) -> tuple[list[Firing], StageWalk, list[Firing]]:
    """Every firing of every rule for one customer decided by ``until`` (skips left
    out), superseded steps included when ``versions`` holds rule changes (``book``
    is then its seed), the customer's stage through time, and the firings deferred
    by a send window still undecided at ``until`` (agents/offline/deferral.py)."""
    timeline = Timeline(
        facts.order_times, facts.session_times, facts.consents, facts.order_spend, facts.history
    )
    stages = StageWalk(timeline, book.lifecycle, until)
    items: list[LadderItem] = []
    kept: dict[str, list[tuple[int, bool]]] = {}
    if versions is not None and versions.changed:
        keyed = {r.name for v in versions.versions for r in v.book.rules if r.keyed}
        unkeyed = {r.name for v in versions.versions for r in v.book.rules if not r.keyed}
        if keyed & unkeyed:
            raise ValueError(f"rules changes: {sorted(keyed & unkeyed)[0]!r} changes its keying")
        carts = timeline.history.cart_ids() if timeline.history is not None else []
        for name in versions.names():
            kept[name] = []
            if name not in keyed:
                items += versioned_ladder(timeline, name, versions, until, stages, kept[name])
                continue
            # A cart rule's ladders, each cart on its own (a change restarts them
            # cart by cart: docs/lifecycle.md "Rules"); what a switch does to the
            # rule is the same for every cart, so it is listed once.
            for i, key in enumerate(carts):
                switches = kept[name] if i == 0 else []
                items += versioned_ladder(
                    timeline, name, versions, until, stages, switches, key=key
                )
    else:
        for rule in book.rules:
            items += timeline.ladder(rule, until, stages)
    priority_at = None
    if versions is not None and versions.changed:

        def priority_at(name: str, t: int) -> int | None:
            rule = versions.at(t).rule(name)
            return None if rule is None else rule.priority

    decided, undecided = schedule(
        items, timeline, stages, facts.zone_at, until, cut_over, kept, priority_at
    )
    made = [_firing(facts.customer_id, t, timeline) for t in decided]
    return made, stages, [_firing(facts.customer_id, t, timeline) for t in undecided]


def context(item: LadderItem, timeline: Timeline, at: int) -> dict[str, Any] | None:
    """A lifecycle rule's ``context`` on the facts as of ``at``, when it is decided
    (the send time of a deferred firing): the viewed products dated by the due time,
    the cart as it is then (none once it is no longer kept); docs/lifecycle.md
    "Rules".  None for every other rule."""
    rule, history = item.rule, timeline.history
    step = rule.steps[item.step - 1]
    if isinstance(step, OrderStep):
        return {"milestone": {"orders": step.k}}
    if isinstance(step, Anniversary):
        return {"milestone": {"years": step.years}}
    if history is None:
        return None
    if rule.anchor == ANCHOR_LAST_VIEW:
        return {"products": [p for t, p in history.newest_views(at) if t <= item.due]}
    if rule.anchor == ANCHOR_CART:
        assert item.key is not None
        cart = history.cart(item.key, at)
        return {} if cart is None else {"cart": cart.context()}
    return None


def _firing(customer_id: str, timing: Timing, timeline: Timeline) -> Firing:
    item = timing.item
    rule = item.rule
    return Firing(
        customer_id=customer_id,
        rule=rule.name,
        priority=timing.priority,
        step=item.step,
        threshold=item.threshold,
        anchor=item.anchor,
        due=item.due,
        transactional=rule.transactional,
        arbitration=rule.arbitration,
        reason=reason_text(rule, item.step, item.threshold, item.anchor),
        channel=rule.channel,
        rule_version=rule.version,
        superseded_at=timing.at if timing.at_switch else None,
        send_at=timing.send_at,
        zone=timing.zone,
        decided_at=timing.at,
        ruled=timing.outcome,
        deferred=timing.deferred,
        key=item.key,
        context=context(item, timeline, timing.at),
    )


def outcome_dict(c: Conversion, attribution_window: int) -> dict[str, Any]:
    """The JSON form of one conversion, field for field what retention.outcomes carries
    (the record the customer agent sends, built by the same function)."""
    return outcome_record(c, attribution_window=attribution_window).to_dict()


def report_rows(
    facts: dict[str, CustomerFacts],
    stages: dict[str, str],
    judged: list[tuple[Firing, Verdict]],
    converted: list[Conversion],
    core: CoreSettings,
    until: int | None = None,
    revenue_rules: frozenset[str] = frozenset(),
) -> list[CustomerRow]:
    """One :class:`CustomerRow` per customer, built from the file alone, with the
    lifecycle's facts as of ``until`` (docs/lifecycle.md "Facts", "Cancellations")
    and the recovered revenue of the ``revenue_rules`` (anchored on a view or a
    cart: docs/lifecycle.md "Attribution")."""
    decided: dict[str, dict[CountKey, int]] = {}
    for f, v in judged:
        key = CountKey(f.rule, f.step, v.outcome)
        counts = decided.setdefault(f.customer_id, {})
        counts[key] = counts.get(key, 0) + 1
    sends = send_counts(judged)
    won: dict[str, dict[CountKey, int]] = {}
    for c in converted:
        key = CountKey(c.firing.rule, c.firing.step, c.group)
        counts = won.setdefault(c.firing.customer_id, {})
        counts[key] = counts.get(key, 0) + 1
    recovered = _recovered(converted, revenue_rules)
    rows = []
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
                # A currency whose orders were all cancelled keeps its spend ("0") and
                # loses its count (docs/lifecycle.md "Cancellations").
                order_currencies={c: n for c, _, n in fx.spend_by_currency if n},
                active_spans=tuple((a, b) for a, b in spans),
                stage=stages.get(cid, "prospect"),
                decision_counts=decided.get(cid, {}),
                conversion_counts=won.get(cid, {}),
                send_counts=sends.get(cid, {}),
                **_lifecycle_row(fx, until),
                recovered=recovered.get(cid, {}),
            )
        )
    return rows


def attribution_caps(versions: Versions) -> Callable[[int], dict[str, int]]:
    """Rules of which only the newest few firings can convert an order at t, in the
    version in force at t (docs/lifecycle.md "Attribution"): a last_view rule's
    steps, a cart rule's steps x 3 (its carts)."""

    def caps(t: int) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in versions.at(t).book.rules:
            if r.anchor == ANCHOR_LAST_VIEW:
                out[r.name] = len(r.steps)
            elif r.anchor == ANCHOR_CART:
                out[r.name] = len(r.steps) * MAX_CARTS
        return out

    return caps


def _lifecycle_row(fx: CustomerFacts, until: int | None) -> dict[str, Any]:
    h = fx.history
    if h is None or until is None:
        return {}
    o = h.orders(until)
    return {
        "first_view_at": h.first_view_at(until),
        "first_cart_at": h.first_cart_at(until),
        "first_checkout_at": h.first_checkout_at(until),
        "cancelled_orders": o.cancelled,
        "partial_cancels": o.partial,
        "refunded": {c: format(a, "f") for c, a in o.refunded},
    }


def _recovered(
    converted: list[Conversion], revenue_rules: frozenset[str]
) -> dict[str, dict[str, dict[str, dict[str, str]]]]:
    """customer -> rule -> group -> currency -> the converting orders' amounts, exact;
    the 2 alphabetically smallest currencies on their own, the rest under XXX
    (MAX_RECOVERED_CURRENCIES: docs/reports.md "Recovered revenue")."""
    sums: dict[str, dict[str, dict[str, dict[str, Decimal]]]] = {}
    with localcontext(prec=80):
        for c in converted:
            if c.rule not in revenue_rules or c.amount is None:
                continue
            into = sums.setdefault(c.customer_id, {}).setdefault(c.rule, {})
            cur = into.setdefault(c.group, {})
            code = c.currency or OTHER_CURRENCY
            cur[code] = cur.get(code, Decimal(0)) + Decimal(c.amount)
    out: dict[str, dict[str, dict[str, dict[str, str]]]] = {}
    for cid, rules in sums.items():
        for rule, groups in rules.items():
            for group, totals in groups.items():
                folded = _fold_currencies(
                    {k: (v, 0) for k, v in totals.items()}, MAX_RECOVERED_CURRENCIES
                )
                out.setdefault(cid, {}).setdefault(rule, {})[group] = {
                    k: format(v, "f") for k, (v, _) in sorted(folded.items())
                }
    return out


def decision_dict(firing: Firing, verdict: Verdict, *, versioned: bool = False) -> dict[str, Any]:
    """The JSON form of one decision, as ``retention report --decisions`` prints it;
    ``versioned`` (a rules file was given) adds the reason, the rule's version and
    its channel (when set)."""
    out: dict[str, Any] = {
        "customer_id": firing.customer_id,
        "rule": firing.rule,
        "step": firing.step,
        "threshold": format_duration(timedelta(microseconds=firing.threshold)),
        "threshold_seconds": firing.threshold // MICROS_PER_SECOND,
        "anchor_at": iso(firing.anchor),
        "due_at": iso(firing.due),
        "trigger_id": trigger_id(
            firing.customer_id, firing.rule, firing.step, firing.anchor, firing.key
        ),
        "delivered": verdict.delivered,
        "outcome": verdict.outcome,
        "holdout": verdict.holdout,
    }
    if versioned:
        out["reason"] = firing.reason
        out["rule_version"] = firing.rule_version
        if firing.channel is not None:
            out["channel"] = firing.channel
    if firing.context is not None:
        out["context"] = firing.context
    if firing.zone is not None:
        # Only with a window (docs/send-windows.md): absent otherwise.
        out.update(send_fields(firing.send_at, firing.zone))
    return out


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
    # Firings deferred by a send window to after ``until``: no decision yet.
    undecided: list[Firing] = field(default_factory=list)
    conversions: list[Conversion] = field(default_factory=list)  # what ``outcomes`` renders


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
    rules: str | Mapping[str, Any] | None = None,
    until: int | None = None,
    now: int | None = None,
    arrival_order: bool = False,
    changes: Sequence[tuple[int, str | Mapping[str, Any]]] = (),
) -> ReferenceResult:
    """Read raw JSONL lines and compute every decision due at or before ``until``.

    ``until`` (micros) defaults to the latest ``occurred_at`` of any valid line;
    ``now`` (micros) is the processor clock for the future-timestamp check and
    defaults to the wall clock.  Duplicates (an ``event_id`` or ``order_id`` seen
    before) are resolved in event-time order, file order among equal times, as
    ``retention replay`` feeds the file; ``arrival_order=True`` resolves them in
    file order instead, for a file that is the arrival order of a live feed (what
    ``retention produce`` sends as it is).

    ``rules`` is a rules file (its TOML text, or the dict ``tomllib`` gives): its
    rules, guardrails and lifecycle replace the ones in ``cfg``, and each decision
    gains its reason, ``rule_version`` and channel.  Without it, today's three
    rules run with ``cfg``'s settings (:func:`agents.offline.rulebook.legacy_rulebook`).

    ``changes`` are rule changes, (effective_at micros, rules file), on top of
    that seed (docs/rules.md "Changing rules"; :mod:`agents.offline.versions`):
    decisions then carry their rule's version, and steps a change passed over come
    out as ``superseded`` decisions.  A change of the lifecycle or the attribution
    window is refused with a ``ValueError``.
    """
    core, max_bytes, future_tolerance, earliest = _settings(cfg)
    if rules is None and getattr(core, "rules", None) is not None:
        # The settings carry the engine's parsed rules, which the reference must not
        # read (it is the oracle): without their text it would run other rules.
        raise ValueError("the settings hold a rules file: pass its text as rules=")
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
        if b"timezone" in line:
            # The zone read with this module's own code, not validation's.
            event = dataclasses.replace(event, timezone=zone_name(orjson.loads(line)))
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
            log.amount_text.setdefault(event.order_id, event.amount)
        elif event.kind == KIND_SESSION:
            log.sessions.append((event.occurred_at, event.event_id))
        elif event.kind == KIND_CONSENT:
            assert event.status is not None
            log.consents.append((event.occurred_at, event.status))
        if event.kind in (KIND_PURCHASE, KIND_SESSION) or event.kind in LIFECYCLE_KINDS:
            log.life.append(event)
        if event.timezone is not None:
            log.zones.append((event.occurred_at, event.timezone))
        log.events += 1
        events += 1

    facts = {customer_id: log.facts() for customer_id, log in logs.items()}
    horizon = latest if until is None else until
    book = legacy_rulebook(core) if rules is None else read_rules(rules)
    versions = Versions.read(book, changes)
    firings: list[Firing] = []
    undecided: list[Firing] = []
    stages: dict[str, str] = {}
    cut_over = core.backfill_until
    if horizon is not None:
        for cid, customer in facts.items():
            made, walk, left = customer_firings(customer, book, horizon, versions, cut_over)
            firings.extend(made)
            undecided.extend(left)
            stages[cid] = walk.at(horizon)
    if cut_over is not None:
        # Backfill loads history without firing: these never happened, so they
        # must not count toward any guardrail either.
        firings = [f for f in firings if f.due >= cut_over]
    firings.sort(key=Firing.sort_key)
    if versions.changed:
        judged = apply_guardrails(firings, facts, versions.guardrails_at, versions.transactional_at)
    else:
        judged = apply_guardrails(firings, facts, book.guardrails)
    # Conversions and report rows as of the horizon: an event after it has not
    # happened yet from the report's point of view.
    seen = (
        {cid: log.facts(until=horizon) for cid, log in logs.items()}
        if horizon is not None
        else facts
    )
    window = book.guardrails.attribution_window
    converted = [
        dataclasses.replace(
            c,
            amount=logs[c.customer_id].amount_text[c.order_id],
            currency=logs[c.customer_id].orders[c.order_id][2],
        )
        for c in conversions(judged, seen, window, attribution_caps(versions))
    ]
    return ReferenceResult(
        decisions=[
            decision_dict(f, v, versioned=rules is not None or versions.changed) for f, v in judged
        ],
        firings=judged,
        outcomes=[outcome_dict(c, window) for c in converted],
        rows=report_rows(
            seen,
            stages,
            judged,
            converted,
            core,
            horizon,
            frozenset(
                r.name
                for v in versions.versions
                for r in v.book.rules
                if r.anchor in (ANCHOR_LAST_VIEW, ANCHOR_CART)
            ),
        ),
        dead_letters=dict(sorted(dead_letters.items())),
        events=events,
        duplicates=duplicates,
        order_retries=order_retries,
        customers=len(facts),
        facts=facts,
        until=horizon,
        lines=read,
        undecided=sorted(undecided, key=Firing.sort_key),
        conversions=converted,
    )
