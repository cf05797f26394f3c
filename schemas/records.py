"""Python records for every message contract; the JSON Schemas beside this file
describe the same shapes and ``tests/unit/schemas`` checks that they agree.

The processor builds every output record (decision, nudge, outcome, dead letter)
from these classes and turns it into JSON with ``to_dict`` only when it is sent.

Times are RFC 3339 strings on the wire and integer microseconds since the epoch
inside the processor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

SCHEMA_PURCHASE = "purchase/1"
# purchase/1 with a cart id and items (docs/lifecycle.md "Inputs"): purchase/1 stays
# valid and unchanged, since it allows extra fields.
SCHEMA_PURCHASE_2 = "purchase/2"
SCHEMA_SIGNUP = "signup/1"
SCHEMA_PRODUCT_VIEW = "product_view/1"
SCHEMA_CART = "cart/1"
SCHEMA_ORDER_CANCELLED = "order_cancelled/1"
SCHEMA_SESSION = "session/1"
SCHEMA_CONSENT = "consent/1"
SCHEMA_NUDGE = "nudge/1"
SCHEMA_DECISION = "decision/1"
SCHEMA_DEAD_LETTER = "dead_letter/1"
SCHEMA_OUTCOME = "outcome/1"

KIND_PURCHASE = "purchase"
KIND_SESSION = "session"
KIND_CONSENT = "consent"
KIND_SIGNUP = "signup"
KIND_VIEW = "product_view"
KIND_CART = "cart"
KIND_CANCEL = "order_cancelled"

# A cart snapshot's action and a cancellation's scope (docs/lifecycle.md "Inputs").
CART_UPDATED = "updated"
CART_CHECKOUT = "checkout_started"
CART_EMPTIED = "emptied"
CANCEL_FULL = "full"
CANCEL_PARTIAL = "partial"
# Items a cart snapshot / an order may carry: the row keeps a kept cart's items, so
# the bound is part of the byte budget (docs/budget.md).
MAX_CART_ITEMS = 10
MAX_ORDER_ITEMS = 50

CONSENT_OPTED_OUT = "opted_out"
CONSENT_OPTED_IN = "opted_in"


class Item(NamedTuple):
    """One line of a cart snapshot or an order: ``unit_price`` is the producer's
    exact decimal string, ``currency`` an ISO 4217 code."""

    product_id: str
    quantity: int
    unit_price: str
    currency: str

    def to_wire(self) -> list[Any]:
        return [self.product_id, self.quantity, self.unit_price, self.currency]

    @staticmethod
    def from_wire(v: list[Any]) -> Item:
        return Item(v[0], int(v[1]), v[2], v[3])


@dataclass(frozen=True, slots=True)
class Event:
    """A validated input event (purchase, session, consent, signup, product view,
    cart snapshot or order cancellation), normalised.

    ``kind`` is the schema family; ``occurred_at`` is microseconds since the epoch;
    ``amount`` is kept as the producer's decimal string so sums stay exact.
    """

    kind: str
    event_id: str
    customer_id: str
    occurred_at: int
    order_id: str | None = None
    amount: str | None = None
    currency: str | None = None
    session_id: str | None = None
    status: str | None = None
    channel: str | None = None
    # The customer's IANA zone when it is one tzdata knows; otherwise the name sent
    # (at most 64 characters of it) in ``timezone_ignored``, kept for the lookup
    # only (docs/send-windows.md "The customer's zone").
    timezone: str | None = None
    timezone_ignored: str | None = None
    # The lifecycle inputs (docs/lifecycle.md "Inputs"): a view's product (category
    # and price kept for the lookup only), a cart's id, its snapshot's action and
    # items, an order's cart id and items (purchase/2), a cancellation's scope in
    # ``action`` ("full" / "partial") with its order id, amount and currency.
    product_id: str | None = None
    category: str | None = None
    price: str | None = None
    cart_id: str | None = None
    action: str | None = None
    items: tuple[Item, ...] | None = None

    def to_wire(self) -> dict[str, Any]:
        """The compact form carried on the internal customer-keyed topic."""
        out: dict[str, Any] = {
            "k": self.kind,
            "e": self.event_id,
            "c": self.customer_id,
            "t": self.occurred_at,
        }
        if self.order_id is not None:
            out["o"] = self.order_id
        if self.amount is not None:
            out["a"] = self.amount
        if self.currency is not None:
            out["cur"] = self.currency
        if self.session_id is not None:
            out["s"] = self.session_id
        if self.status is not None:
            out["st"] = self.status
        if self.channel is not None:
            out["ch"] = self.channel
        if self.timezone is not None:
            out["tz"] = self.timezone
        if self.timezone_ignored is not None:
            out["tzx"] = self.timezone_ignored
        if self.product_id is not None:
            out["p"] = self.product_id
        if self.category is not None:
            out["cat"] = self.category
        if self.price is not None:
            out["pr"] = self.price
        if self.cart_id is not None:
            out["cart"] = self.cart_id
        if self.action is not None:
            out["act"] = self.action
        if self.items is not None:
            out["it"] = [item.to_wire() for item in self.items]
        return out

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Event:
        return cls(
            kind=d["k"],
            event_id=d["e"],
            customer_id=d["c"],
            occurred_at=int(d["t"]),
            order_id=d.get("o"),
            amount=d.get("a"),
            currency=d.get("cur"),
            session_id=d.get("s"),
            status=d.get("st"),
            channel=d.get("ch"),
            timezone=d.get("tz"),
            timezone_ignored=d.get("tzx"),
            product_id=d.get("p"),
            category=d.get("cat"),
            price=d.get("pr"),
            cart_id=d.get("cart"),
            action=d.get("act"),
            items=tuple(Item.from_wire(v) for v in it) if (it := d.get("it")) is not None else None,
        )


@dataclass(frozen=True, slots=True)
class Threshold:
    """A duration as the outputs carry it: ISO 8601 and whole seconds."""

    iso: str
    seconds: int

    def to_dict(self) -> dict[str, Any]:
        return {"iso": self.iso, "seconds": self.seconds}


# The output records below are built once per firing, conversion or rejected
# message, on the customer agent's hot path: plain slots dataclasses (a frozen
# one's __init__ costs about twice as much) with a hand-written ``to_dict``, the
# wire form, whose keys are exactly the JSON Schema's (tests/unit/schemas).


@dataclass(slots=True)
class Trigger:
    """What ``decision/1`` and ``nudge/1`` both say about one firing of one ladder step."""

    trigger_id: str
    customer_id: str
    rule: str
    step: int
    threshold: Threshold
    anchor_at: str
    due_at: str
    fired_at: str
    holdout: bool
    reason: str  # one human line
    context: dict[str, Any]
    # The rule's version (docs/rules.md "Rules file") and its channel (nudges only);
    # each left out of the record when unset.
    rule_version: str | None = field(default=None, kw_only=True)
    channel: str | None = field(default=None, kw_only=True)
    # With a send window (docs/send-windows.md "Outputs"): when it is sent (RFC 3339
    # UTC; None when dropped outside its window), the zone the window was read in
    # and the local wall time.  All three are left out when ``send_zone`` is None
    # (the rule has no window), so such records are today's byte for byte.
    send_at: str | None = field(default=None, kw_only=True)
    send_zone: str | None = field(default=None, kw_only=True)
    send_local: str | None = field(default=None, kw_only=True)

    def add_send(self, out: dict[str, Any]) -> None:
        """Add the send time, zone and local time when the rule has a window."""
        if self.send_zone is not None:
            out["send_at"] = self.send_at
            out["send_zone"] = self.send_zone
            out["send_local"] = self.send_local

    def trigger_dict(self, schema: str) -> dict[str, Any]:
        return {
            "schema": schema,
            "trigger_id": self.trigger_id,
            "customer_id": self.customer_id,
            "rule": self.rule,
            "step": self.step,
            "threshold": self.threshold.to_dict(),
            "anchor_at": self.anchor_at,
            "due_at": self.due_at,
            "fired_at": self.fired_at,
            "holdout": self.holdout,
            "reason": self.reason,
            "context": self.context,
        }


@dataclass(slots=True)
class NudgeTrigger(Trigger):
    """A delivered trigger for messaging services (``nudge/1``)."""

    schema: ClassVar[str] = SCHEMA_NUDGE

    def to_dict(self) -> dict[str, Any]:
        return _nudge_dict(self)


@dataclass(slots=True)
class Decision(Trigger):
    """One firing of one ladder step, delivered or suppressed (``decision/1``)."""

    delivered: bool
    # "delivered", a suppression reason code, "superseded" (docs/rules.md
    # "Changing rules") or "skipped" (docs/prediction.md "The churn_risk rule")
    outcome: str
    clock: str  # "wall" or "stream"
    schema: ClassVar[str] = SCHEMA_DECISION

    def to_dict(self) -> dict[str, Any]:
        out = self.trigger_dict(SCHEMA_DECISION)
        out["delivered"] = self.delivered
        out["outcome"] = self.outcome
        out["clock"] = self.clock
        if self.rule_version is not None:
            out["rule_version"] = self.rule_version
        self.add_send(out)
        return out

    def nudge_dict(self) -> dict[str, Any]:
        """The ``nudge/1`` record of this (delivered) decision: what
        ``NudgeTrigger.to_dict`` gives for its trigger fields."""
        return _nudge_dict(self)


def _nudge_dict(trigger: Trigger) -> dict[str, Any]:
    out = trigger.trigger_dict(SCHEMA_NUDGE)
    if trigger.rule_version is not None:
        out["rule_version"] = trigger.rule_version
    if trigger.channel is not None:
        out["channel"] = trigger.channel
    trigger.add_send(out)
    return out


@dataclass(slots=True)
class Outcome:
    """A conversion attributed to one firing (``outcome/1``), once per firing."""

    trigger_id: str
    customer_id: str
    rule: str
    step: int
    group: str  # "delivered" or "holdout"
    anchor_at: str
    due_at: str
    converted_at: str
    order_id: str
    hours_to_convert: float
    attribution_window: Threshold
    # The firing's send time when its rule has a window (docs/send-windows.md
    # "Outputs"): attribution counts from it.  Left out when None.
    send_at: str | None = field(default=None, kw_only=True)
    # The converting order's amount (exact decimal text) and currency, as placed
    # (docs/reports.md "Recovered revenue").  Optional in the schema so that records
    # written before them stay valid; every conversion now carries both.
    amount: str | None = field(default=None, kw_only=True)
    currency: str | None = field(default=None, kw_only=True)
    schema: ClassVar[str] = SCHEMA_OUTCOME

    def to_dict(self) -> dict[str, Any]:
        out = {
            "schema": SCHEMA_OUTCOME,
            "trigger_id": self.trigger_id,
            "customer_id": self.customer_id,
            "rule": self.rule,
            "step": self.step,
            "group": self.group,
            "anchor_at": self.anchor_at,
            "due_at": self.due_at,
            "converted_at": self.converted_at,
            "order_id": self.order_id,
            "hours_to_convert": self.hours_to_convert,
            "attribution_window": self.attribution_window.to_dict(),
        }
        if self.send_at is not None:
            out["send_at"] = self.send_at
        if self.amount is not None:
            out["amount"] = self.amount
        if self.currency is not None:
            out["currency"] = self.currency
        return out


@dataclass(slots=True)
class SourcePosition:
    topic: str
    partition: int
    offset: int

    def to_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}


@dataclass(slots=True)
class DeadLetter:
    """A rejected input message with everything needed to find and fix it (``dead_letter/1``)."""

    error_code: str
    error: str
    source: SourcePosition
    original_base64: str  # whole message up to 160 KiB, else its head
    original_size: int
    original_truncated: bool
    original_sha256: str
    original_text: str | None  # the first 512 bytes, if they are UTF-8
    received_at: str
    schema: ClassVar[str] = SCHEMA_DEAD_LETTER

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_DEAD_LETTER,
            "error_code": self.error_code,
            "error": self.error,
            "source": self.source.to_dict(),
            "original_base64": self.original_base64,
            "original_size": self.original_size,
            "original_truncated": self.original_truncated,
            "original_sha256": self.original_sha256,
            "original_text": self.original_text,
            "received_at": self.received_at,
        }
