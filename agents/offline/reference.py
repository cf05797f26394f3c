"""The offline reference: nudge decisions computed in batch from a JSONL event file.

This is the oracle the streaming engine is tested against, so it shares none of
the streaming machinery and is written as plainly as possible: read every line,
keep each customer's deduplicated events, sort them by time, walk the ladders.

Semantics (the stream implements the same):

* Every non-blank line is validated with :func:`agents.core.validation.validate`;
  an invalid line is counted under its error code and skipped.
* Deduplication is per customer, because that is where the stream keeps its
  dedup memory: an ``event_id`` the customer has sent before is ignored (first
  occurrence in file order wins); an order counts once, at the ``occurred_at`` of
  the first event (file order) carrying its ``order_id``; later events with that
  ``order_id`` are ignored entirely, they are not activity either.
* Activity = counted orders and sessions; consents are not activity.
* ``f`` = earliest order time, ``s`` = second-earliest order time (two orders at
  the same instant give ``s == f``).
* ``second_purchase`` step k is due at ``D = f + th_k`` and fires iff
  ``(s is None or D < s) and D <= until``; its anchor is ``f``.
* ``inactivity``: with ``a_1 < ... < a_n`` the distinct activity times ``>= f``,
  step k of anchor ``a_i`` is due at ``D = a_i + th_k`` and fires iff
  ``(i == n or D < a_{i+1}) and D <= until``. Customers without an order never
  get this rule.
* Backfill: with ``backfill_until`` set, firings due before it are not emitted.
* Output order: (due time, customer_id, rule order in config, step).

Guardrails (holdout, opt-out, gaps, caps) are applied by :func:`apply_guardrails`
after the complete firing list is built; for now it delivers everything.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any, Protocol

from agents.core import ids
from agents.core.settings import (
    RULE_INACTIVITY,
    RULE_SECOND_PURCHASE,
    CoreSettings,
    LadderSettings,
)
from agents.core.timeutil import MICROS_PER_SECOND, format_duration, iso
from agents.core.validation import ValidationError, validate
from schemas.records import KIND_CONSENT, KIND_PURCHASE, KIND_SESSION

OUTCOME_DELIVERED = "delivered"


class ReferenceConfig(Protocol):
    """What the reference reads from :class:`streams.config.Config`."""

    @property
    def core(self) -> CoreSettings: ...

    @property
    def max_message_bytes(self) -> int: ...

    @property
    def future_tolerance(self) -> int: ...


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
    orders: dict[str, int] = field(default_factory=dict)
    sessions: list[int] = field(default_factory=list)
    consents: list[tuple[int, str]] = field(default_factory=list)
    spend: Decimal = Decimal(0)
    events: int = 0

    def facts(self) -> CustomerFacts:
        return CustomerFacts(
            customer_id=self.customer_id,
            order_times=tuple(sorted(self.orders.values())),
            session_times=tuple(sorted(self.sessions)),
            consents=tuple(sorted(self.consents, key=lambda c: c[0])),
            spend=self.spend,
            events=self.events,
        )


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


RuleFunction = Callable[[CustomerFacts, LadderSettings, int, int], list[Firing]]

RULES: dict[str, RuleFunction] = {
    RULE_SECOND_PURCHASE: second_purchase_firings,
    RULE_INACTIVITY: inactivity_firings,
}


def apply_guardrails(
    firings: list[Firing], facts: dict[str, CustomerFacts], core: CoreSettings
) -> list[tuple[Firing, Verdict]]:
    """Give every firing (already in output order) its verdict.

    The guardrails of SPEC section 4 (holdout, opted_out, min_gap, frequency_cap)
    will walk each customer's firings in this order; until then all are delivered.
    """
    return [(firing, DELIVERED) for firing in firings]


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


# --- the whole file ----------------------------------------------------------------


@dataclass(slots=True)
class ReferenceResult:
    """Decisions and counts for one event file."""

    decisions: list[dict[str, Any]]
    firings: list[tuple[Firing, Verdict]]
    dead_letters: dict[str, int]
    events: int  # valid events that changed something (after both kinds of dedup)
    duplicates: int  # valid lines whose event_id the customer had sent before
    order_retries: int  # valid purchases with a new event_id for an order already counted
    customers: int
    facts: dict[str, CustomerFacts]
    until: int | None  # the evaluation horizon used (None: the file had no valid event)
    lines: int  # non-blank lines read


def _settings(cfg: ReferenceConfig | CoreSettings) -> tuple[CoreSettings, int, int]:
    if isinstance(cfg, CoreSettings):
        # The input limits' defaults live in the one config object; streams.config is
        # plain Python (no Faust), so importing it keeps this module pure.
        from streams.config import Config

        defaults = Config(core=cfg)
        return cfg, defaults.max_message_bytes, defaults.future_tolerance
    return cfg.core, cfg.max_message_bytes, cfg.future_tolerance


def compute_decisions(
    lines: Iterable[bytes],
    cfg: ReferenceConfig | CoreSettings,
    *,
    until: int | None = None,
    now: int | None = None,
) -> ReferenceResult:
    """Read raw JSONL lines and compute every decision due at or before ``until``.

    ``until`` (micros) defaults to the latest ``occurred_at`` of any valid line;
    ``now`` (micros) is the processor clock for the future-timestamp check and
    defaults to the wall clock.
    """
    core, max_bytes, future_tolerance = _settings(cfg)
    if now is None:
        now = time.time_ns() // 1000
    logs: dict[str, _CustomerLog] = {}
    dead_letters: dict[str, int] = {}
    duplicates = order_retries = events = read = 0
    latest: int | None = None
    for raw in lines:
        line = raw.rstrip(b"\r\n")
        if not line.strip():
            continue
        read += 1
        try:
            event = validate(line, now=now, max_bytes=max_bytes, future_tolerance=future_tolerance)
        except ValidationError as exc:
            dead_letters[exc.code] = dead_letters.get(exc.code, 0) + 1
            continue
        if latest is None or event.occurred_at > latest:
            latest = event.occurred_at
        log = logs.get(event.customer_id)
        if log is None:
            log = logs[event.customer_id] = _CustomerLog(event.customer_id)
        if event.event_id in log.event_ids:
            duplicates += 1
            continue
        log.event_ids.add(event.event_id)
        if event.kind == KIND_PURCHASE:
            assert event.order_id is not None and event.amount is not None
            if event.order_id in log.orders:
                order_retries += 1
                continue
            log.orders[event.order_id] = event.occurred_at
            log.spend += Decimal(event.amount)
        elif event.kind == KIND_SESSION:
            log.sessions.append(event.occurred_at)
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
                firings.extend(rule(customer, ladder, rule_order, horizon))
    if core.backfill_until is not None:
        cut_over = core.backfill_until
        # Backfill loads history without firing: these never happened, so they
        # must not count toward any guardrail either.
        firings = [f for f in firings if f.due >= cut_over]
    firings.sort(key=Firing.sort_key)
    judged = apply_guardrails(firings, facts, core)
    return ReferenceResult(
        decisions=[decision_dict(f, v) for f, v in judged],
        firings=judged,
        dead_letters=dict(sorted(dead_letters.items())),
        events=events,
        duplicates=duplicates,
        order_retries=order_retries,
        customers=len(facts),
        facts=facts,
        until=horizon,
        lines=read,
    )
