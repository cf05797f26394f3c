"""Firings and what the guardrails make of them, in the offline reference
(docs/guardrails.md "Guardrails"; agents/offline/reference.py computes them).

Written from the docs, without the engine's guardrail classes: a customer's
firings in output order are walked once, each judged at its send time (the due
time unless a send window deferred it: agents/offline/deferral.py) on the
customer's consents and the nudges delivered before it; a delivered or holdout
firing converts on the first order within the attribution window after it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from agents.core import ids
from agents.core.timeutil import MICROS_PER_DAY, MICROS_PER_SECOND, iso
from agents.offline.lifecycle import trigger_id
from agents.offline.rulebook import GuardrailSettings, RuleSpec
from schemas.records import CONSENT_OPTED_OUT

OUTCOME_DELIVERED = "delivered"
OUTCOME_HOLDOUT = "holdout"
OUTCOME_OPTED_OUT = "opted_out"
OUTCOME_MIN_GAP = "min_gap"
OUTCOME_FREQUENCY_CAP = "frequency_cap"
OUTCOME_OUTRANKED = "outranked"
# A step a rule change passed over (docs/rules.md "Changing rules"): no nudge.
OUTCOME_SUPERSEDED = "superseded"
# A churn_risk step already crossed at its anchor: no nudge
# (docs/prediction.md "The churn_risk rule").
OUTCOME_SKIPPED = "skipped"


class Facts(Protocol):
    """What judging reads of a customer (agents.offline.reference.CustomerFacts)."""

    @property
    def consents(self) -> tuple[tuple[int, str], ...]: ...

    @property
    def orders(self) -> tuple[tuple[int, str, str], ...]: ...


@dataclass(frozen=True, slots=True)
class Firing:
    """One ladder step whose condition held at its due time (micros everywhere)."""

    customer_id: str
    rule: str
    priority: int  # orders firings due at the same instant (lower first)
    step: int
    threshold: int
    anchor: int
    due: int
    transactional: bool = False
    arbitration: bool = False
    reason: str = ""
    channel: str | None = None
    rule_version: str = ""
    # Set for a step superseded by the rule change at that instant: emitted then,
    # before anything due at it (docs/rules.md "Changing rules").
    superseded_at: int | None = None
    # Send windows (agents/offline/deferral.py): when it is sent (the due time inside
    # its window, later when deferred; None when dropped), the zone its window was
    # read in (None: its rule has no window), when it is decided (None: at ``due``),
    # an outcome decided before any guardrail, and whether it was deferred (decided
    # before its rule's step due at the same instant).
    send_at: int | None = None
    zone: str | None = None
    decided_at: int | None = None
    ruled: str | None = None
    deferred: bool = False
    # A keyed (cart) ladder's cart and the lifecycle rules' context, read on the
    # facts as of the due time (docs/lifecycle.md "Rules"); None for other rules.
    key: str | None = None
    context: dict[str, Any] | None = None

    @property
    def trigger_id(self) -> str:
        return trigger_id(self.customer_id, self.rule, self.step, self.anchor, self.key)

    @property
    def at(self) -> int:
        """When it is decided (and judged by the guardrails)."""
        if self.superseded_at is not None:
            return self.superseded_at
        return self.due if self.decided_at is None else self.decided_at

    @property
    def sent(self) -> int:
        """The time gap, cap and attribution count from: the send time, else the due time."""
        return self.due if self.send_at is None else self.send_at

    def sort_key(self) -> tuple[int, str, int, int, int, str, int]:
        """Output order: by decision time; at a rules switch first the deferred firings
        it supersedes (as they were deferred), then the steps a restart supersedes; then
        by priority, a deferred firing before its rule's step due at the same instant,
        then by cart id (a keyed rule's carts due at one instant)."""
        key = self.key or ""
        if self.superseded_at is not None:
            if self.deferred:
                return (self.at, self.customer_id, 0, 0, self.due, key, self.priority)
            return (self.at, self.customer_id, 0, 1, self.priority, key, self.step)
        return (
            self.at,
            self.customer_id,
            1,
            self.priority,
            0 if self.deferred else 1,
            key,
            self.step,
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the guardrails made of a firing."""

    delivered: bool
    outcome: str  # "delivered" or a suppression reason code
    holdout: bool


DELIVERED = Verdict(delivered=True, outcome=OUTCOME_DELIVERED, holdout=False)
SUPERSEDED = Verdict(delivered=False, outcome=OUTCOME_SUPERSEDED, holdout=False)


def human_span(micros: int) -> str:
    """A threshold as people say it: "7 days", "8.9 days" (a cadence), "36 hours"."""
    if micros % MICROS_PER_DAY == 0:
        days = micros // MICROS_PER_DAY
        return f"{days} day" if days == 1 else f"{days} days"
    if micros >= 2 * MICROS_PER_DAY:
        return f"{micros / MICROS_PER_DAY:.1f} days"
    return f"{micros / (3600 * MICROS_PER_SECOND):g} hours"


def reason_text(rule: RuleSpec, step: int, threshold: int, anchor: int) -> str:
    """The rule's reason template with {span}, {anchor_date}, {rule} and {step} filled in."""
    return rule.template.format_map(
        {
            "span": human_span(threshold),
            "anchor_date": iso(anchor)[:10],
            "rule": rule.name,
            "step": step,
        }
    )


def _opted_out_at(consents: tuple[tuple[int, str], ...], due: int) -> bool:
    latest: tuple[int, bool] | None = None
    for t, status in consents:
        if t <= due:
            key = (t, status == CONSENT_OPTED_OUT)
            latest = key if latest is None or key > latest else latest
    return latest is not None and latest[1]


def apply_guardrails(
    firings: list[Firing],
    facts: Mapping[str, Facts],
    guardrails: GuardrailSettings | Callable[[int], GuardrailSettings],
    transactional_at: Callable[[int], frozenset[str]] | None = None,
) -> list[tuple[Firing, Verdict]]:
    """Give every firing (already in output order) its verdict (docs/guardrails.md
    "Guardrails"): holdout, opted_out, outranked, min_gap, frequency_cap, at its
    send time S (:attr:`Firing.sent`: the due time unless a send window deferred
    it) with the guardrails in force then (``guardrails(S)`` across rule changes).
    A firing decided before any guardrail (``outside_window``, ``cancelled``,
    ``superseded``, ``skipped``: :attr:`Firing.ruled`) keeps that outcome and counts
    for nothing.

    A transactional firing skips holdout, min_gap and frequency_cap, is never
    outranked, never outranks, and its deliveries do not count toward another
    firing's gap or cap.  A firing with arbitration on is ``outranked`` when a
    non-transactional firing of the customer sent at the same instant with a lower
    priority number came before it (whatever that one's outcome).

    Across rule changes (docs/rules.md "Changing rules") a superseded step is no
    nudge: it is recorded as such, and never counts toward a gap, a cap or
    arbitration; and the gap and the cap at D count the delivered nudges of the
    rules that are not transactional in the version in force at D
    (``transactional_at(D)``: those rules' names).
    """
    # customer -> (sent, rule, transactional when it fired) of each delivered firing
    delivered: dict[str, list[tuple[int, str, bool]]] = {}
    # customer -> (sent, priority) of their first non-transactional firing at that instant
    first_at: dict[str, tuple[int, int]] = {}
    out: list[tuple[Firing, Verdict]] = []
    for f in firings:
        if f.superseded_at is not None or f.ruled is not None:
            # Decided before any guardrail: never a nudge, never counted.
            ruled = OUTCOME_SUPERSEDED if f.ruled is None else f.ruled
            out.append(
                (f, SUPERSEDED if ruled == OUTCOME_SUPERSEDED else Verdict(False, ruled, False))
            )
            continue
        # Judged at its send time (the due time when it was never deferred), and
        # counted from it (docs/send-windows.md "Deferred firings").
        at = f.sent
        guard = guardrails(at) if callable(guardrails) else guardrails
        cid = f.customer_id
        holdout = (
            not f.transactional
            and ids.holdout_bucket(cid, guard.holdout_salt) < guard.holdout_percent
        )
        history = delivered.setdefault(cid, [])
        if transactional_at is None:
            sent = [t for t, _, tx in history if not tx]
        else:
            exempt = transactional_at(at)
            sent = [t for t, rule, _ in history if rule not in exempt]
        first = first_at.get(cid)
        if first is None or first[0] != at:
            first = None
        pressure = not f.transactional  # subject to gap and cap
        if holdout:
            outcome = OUTCOME_HOLDOUT
        elif _opted_out_at(facts[cid].consents, at):
            outcome = OUTCOME_OPTED_OUT
        elif f.arbitration and pressure and first is not None and first[1] < f.priority:
            outcome = OUTCOME_OUTRANKED
        elif pressure and sent and at - sent[-1] < guard.min_gap:
            outcome = OUTCOME_MIN_GAP
        elif (
            pressure
            and len([t for t in sent if t > at - guard.frequency_window]) >= guard.frequency_cap
        ):
            outcome = OUTCOME_FREQUENCY_CAP
        else:
            outcome = OUTCOME_DELIVERED
            history.append((at, f.rule, f.transactional))
        if pressure and first is None:
            first_at[cid] = (at, f.priority)
        out.append((f, Verdict(outcome == OUTCOME_DELIVERED, outcome, holdout)))
    return out


@dataclass(frozen=True, slots=True)
class Conversion:
    """The first order within the attribution window after a delivered/holdout firing."""

    firing: Firing
    group: str
    converted_at: int
    order_id: str
    # The converting order's amount (its text as given) and currency, as placed
    # (docs/reports.md "Recovered revenue"): set by the reference from its own log.
    amount: str | None = None
    currency: str | None = None

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
    def send_at(self) -> int | None:
        """The firing's send time when its rule has a window (attribution counts from it)."""
        return self.firing.send_at if self.firing.zone is not None else None

    @property
    def trigger_id(self) -> str:
        return self.firing.trigger_id

    @property
    def hours_to_convert(self) -> float:
        # A conversion is strictly after its send time, so the smallest figure is 0.001.
        hours = round((self.converted_at - self.firing.sent) / (3600 * MICROS_PER_SECOND), 3)
        return hours if hours > 0 else 0.001


def conversions(
    judged: list[tuple[Firing, Verdict]],
    facts: Mapping[str, Facts],
    window: int,
    caps: Callable[[int], Mapping[str, int]] | None = None,
) -> list[Conversion]:
    """Each delivered or holdout firing sent at S converts on the first order at t
    with S < t <= S + window.  Of a rule in ``caps`` (anchored on a view or a cart:
    docs/lifecycle.md "Attribution"), only its newest ``cap`` delivered or holdout
    firings decided before t - by send time, then decision order - can: one older
    than that at its first order in the window never converts.  ``caps(t)``: those
    of the rules in force at t (across rules changes)."""
    out: list[Conversion] = []
    # customer -> rule -> (sent, order, decided at) of its delivered/holdout firings
    kept: dict[str, dict[str, list[tuple[int, int, int]]]] = {}
    if caps is not None:
        for i, (f, verdict) in enumerate(judged):
            if verdict.outcome in (OUTCOME_DELIVERED, OUTCOME_HOLDOUT):
                rules = kept.setdefault(f.customer_id, {})
                rules.setdefault(f.rule, []).append((f.sent, i, f.at))
    for i, (f, verdict) in enumerate(judged):
        if verdict.outcome not in (OUTCOME_DELIVERED, OUTCOME_HOLDOUT):
            continue
        # From the send time (docs/send-windows.md "Deferred firings").
        start = f.sent
        hit = next(
            ((t, o) for t, _, o in facts[f.customer_id].orders if start < t <= start + window),
            None,
        )
        cap = None if hit is None or caps is None else caps(hit[0]).get(f.rule)
        if hit is not None and cap is not None:
            before = sorted((sent, j) for sent, j, at in kept[f.customer_id][f.rule] if at < hit[0])
            if (f.sent, i) not in before[-cap:]:
                continue
        if hit is not None:
            out.append(Conversion(f, verdict.outcome, hit[0], hit[1]))
    return out
