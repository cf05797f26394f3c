"""What the engine emits (docs/design.md "Layout"): a firing, a conversion, a refused
event, and a rule's next due step - plain records built by :mod:`agents.core.engine`
and read by the processors and the output records (:mod:`agents.messages`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Any, Protocol

from agents.core.guardrails import OUTCOME_DELIVERED
from agents.core.ids import trigger_id
from agents.core.rules.model import DEFAULT_REASON
from agents.core.state import CustomerState
from agents.core.timeutil import MICROS_PER_DAY, MICROS_PER_SECOND, iso

MICROS_PER_HOUR = 3600 * MICROS_PER_SECOND


# Firing and Due are built for every decision and every due step the engine walks:
# plain slots dataclasses, as the output records are (a frozen one's __init__ sets
# each field through object.__setattr__ and costs about twice as much;
# docs/performance.md "The core fast paths").  Nothing changes one once built.
@dataclass(slots=True)
class Firing:
    """A ladder step whose condition held at its due time."""

    customer_id: str
    rule: str
    rule_index: int
    step: int
    threshold: int
    anchor_at: int
    due_at: int
    backfill: bool
    context: dict[str, Any]
    # What the guardrails made of it: "delivered" or a suppression reason code.
    outcome: str = OUTCOME_DELIVERED
    holdout: bool = False
    # The rule's reason template, version and channel (docs/rules.md "Rules file").
    template: str = DEFAULT_REASON
    rule_version: str | None = None
    channel: str | None = None
    # With a send window (docs/send-windows.md "Deferred firings"): when it is (or
    # would have been) sent and the zone its window was read in.  None, and absent
    # from every output, when the rule has no window.
    send_at: int | None = None
    zone: str | None = None
    # A keyed ladder's key (the cart id: docs/lifecycle.md "Rules"), None otherwise.
    key: str | None = None

    @property
    def delivered(self) -> bool:
        return self.outcome == OUTCOME_DELIVERED

    @property
    def trigger_id(self) -> str:
        return trigger_id(self.customer_id, self.rule, self.step, self.anchor_at, self.key)

    def reason(self, anchor_iso: str | None = None) -> str:
        """One human line; ``anchor_iso`` is ``iso(self.anchor_at)`` if the caller has it."""
        return self.template.format(
            span=_human_span(self.threshold),
            anchor_date=(anchor_iso or iso(self.anchor_at))[:10],
            rule=self.rule,
            step=self.step,
        )


@dataclass(frozen=True, slots=True)
class Conversion:
    """An order within the attribution window after a delivered or holdout firing."""

    customer_id: str
    rule: str
    step: int
    anchor_at: int
    due_at: int
    group: str  # "delivered" or "holdout"
    converted_at: int
    order_id: str
    # The firing's send time when it had a window: attribution counts from it.
    send_at: int | None = None
    # The firing's key when keyed (a cart's ladder): its trigger id names it.
    key: str | None = None
    # The converting order's amount and currency as placed (outcome/1, docs/reports.md
    # "Recovered revenue").
    amount: str | None = None
    currency: str | None = None

    @property
    def trigger_id(self) -> str:
        return trigger_id(self.customer_id, self.rule, self.step, self.anchor_at, self.key)

    @property
    def hours_to_convert(self) -> float:
        # 3 decimals, but never 0: converted_at is after the send time and outcome/1
        # says > 0, so an order within 1.8 s of it reads 0.001 (docs/rules.md
        # "Outcomes (conversions)").  Counted from send_at when the firing had a
        # window (docs/send-windows.md "Deferred firings").
        start = self.due_at if self.send_at is None else self.send_at
        return max(round((self.converted_at - start) / MICROS_PER_HOUR, 3), 0.001)


Emission = Firing | Conversion


@dataclass(frozen=True, slots=True)
class Refused:
    """An event the engine did not take in: nothing is folded, fired or queued.

    ``code`` is the dead-letter code: ``pending_overflow`` (the customer's events
    dated after the clock would pass the hostile-input cap) or
    ``customer_over_budget`` (a row from an older version over the byte budget,
    until its pending events are applied).  Its ids are not remembered, so a
    re-send is taken in once there is room.  ``emitted`` are firings that fell due
    before it (the processor sends them and writes the row).
    """

    code: str
    reason: str
    emitted: tuple[Emission, ...] = ()


@dataclass(slots=True)
class Due:
    due_at: int
    rule_index: int
    step: int
    rule: str
    anchor_at: int
    threshold: int
    # The version of the rule that judges the step: a pinned ladder's own, else the
    # version the customer runs under (docs/rules.md "Changing rules").
    rule_version: str = ""
    # A keyed ladder's key (the cart id: docs/lifecycle.md "Rules"), None otherwise.
    key: str | None = None


class Described(Protocol):
    """What a decision takes of its rule's plan (agents.core.plans.Plan)."""

    @property
    def name(self) -> str: ...
    @property
    def template(self) -> str: ...
    @property
    def channel(self) -> str | None: ...
    @property
    def context(self) -> ContextOf | None: ...


# What a lifecycle rule adds to a decision's context (docs/lifecycle.md "Rules"):
# None for every other rule, whose records stay byte for byte.
ContextOf = Callable[[CustomerState, "Due"], dict[str, Any]]


def firing_of(
    state: CustomerState,
    due: Due,
    plan: Described,
    outcome: str,
    *,
    rule_version: str | None,
    backfill: bool = False,
    holdout: bool = False,
    send_at: int | None = None,
    zone: str | None = None,
) -> Firing:
    """The decision on ``due`` for ``state``'s customer, its facts as of now: the
    one place a :class:`Firing` is built from a due step (guardrails' verdicts,
    superseded, skipped, outside_window and cancelled alike)."""
    context = context_snapshot(state)
    extra = plan.context
    if extra is not None and plan.name == due.rule:
        context.update(extra(state, due))
    return Firing(
        customer_id=state.customer_id,
        rule=due.rule,
        rule_index=due.rule_index,
        step=due.step,
        threshold=due.threshold,
        anchor_at=due.anchor_at,
        due_at=due.due_at,
        backfill=backfill,
        context=context,
        outcome=outcome,
        holdout=holdout,
        template=plan.template,
        rule_version=rule_version,
        channel=plan.channel,
        send_at=send_at,
        zone=zone,
        key=due.key,
    )


def context_snapshot(state: CustomerState) -> dict[str, Any]:
    """What a message needs about the customer, as of the firing's due time."""
    return {
        "order_count": state.orders,
        "spend": dict(sorted(state.spend.items())),
        "first_purchase_at": iso(state.first_order_at)
        if state.first_order_at is not None
        else None,
        "last_purchase_at": iso(state.last_order_at) if state.last_order_at is not None else None,
        "last_activity_at": iso(state.last_activity_at)
        if state.last_activity_at is not None
        else None,
        "lifecycle_stage": state.stage,
    }


def viewed_products(state: CustomerState, due: Due) -> dict[str, Any]:
    """A last_view rule's: the newest viewed products as of D, newest first."""
    return {"products": [p for t, p in state.views if t <= due.due_at]}


def cart_context(state: CustomerState, due: Due) -> dict[str, Any]:
    """A cart rule's: the ladder's cart as its newest snapshot, with its value per
    currency (the exact sum of quantity x unit price)."""
    for cart in state.carts:
        if cart.cart_id == due.key:
            value: dict[str, Decimal] = {}
            with localcontext(prec=80):
                for item in cart.items:
                    value[item.currency] = value.get(item.currency, Decimal(0)) + (
                        item.quantity * Decimal(item.unit_price)
                    )
            return {
                "cart": {
                    "cart_id": cart.cart_id,
                    "action": cart.action,
                    "items": [
                        {
                            "product_id": i.product_id,
                            "quantity": i.quantity,
                            "unit_price": i.unit_price,
                            "currency": i.currency,
                        }
                        for i in cart.items
                    ],
                    "value": {c: format(v, "f") for c, v in sorted(value.items())},
                }
            }
    return {}


def milestone_context(key: str, numbers: tuple[int, ...]) -> ContextOf:
    """A milestone rule's: ``{"milestone": {key: n}}``, n the step's order count
    (``orders``) or years (``years``)."""

    def context(state: CustomerState, due: Due) -> dict[str, Any]:
        return {"milestone": {key: numbers[due.step - 1]}}

    return context


def _human_span(micros: int) -> str:
    if micros % MICROS_PER_DAY == 0:
        days = micros // MICROS_PER_DAY
        return f"{days} day" + ("s" if days != 1 else "")
    if micros >= 2 * MICROS_PER_DAY:  # a per-customer threshold: 8.9 days, not 213.685 hours
        return f"{micros / MICROS_PER_DAY:.1f} days"
    hours = micros / (3600 * MICROS_PER_SECOND)
    return f"{hours:g} hours"
