"""Python records for every message contract; the JSON Schemas beside this file
describe the same shapes and ``tests/unit/schemas`` checks that they agree.

Times are RFC 3339 strings on the wire and integer microseconds since the epoch
inside the processor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SCHEMA_PURCHASE = "purchase/1"
SCHEMA_SESSION = "session/1"
SCHEMA_CONSENT = "consent/1"
SCHEMA_NUDGE = "nudge/1"
SCHEMA_DECISION = "decision/1"
SCHEMA_DEAD_LETTER = "dead_letter/1"
SCHEMA_OUTCOME = "outcome/1"

KIND_PURCHASE = "purchase"
KIND_SESSION = "session"
KIND_CONSENT = "consent"

CONSENT_OPTED_OUT = "opted_out"
CONSENT_OPTED_IN = "opted_in"


@dataclass(frozen=True, slots=True)
class Event:
    """A validated input event (purchase, session or consent), normalised.

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
        )


@dataclass(frozen=True, slots=True)
class Threshold:
    iso: str
    seconds: int


@dataclass(frozen=True, slots=True)
class Decision:
    """One firing of one ladder step, delivered or suppressed (``decision/1``)."""

    trigger_id: str
    customer_id: str
    rule: str
    step: int
    threshold: Threshold
    anchor_at: str
    due_at: str
    fired_at: str
    delivered: bool
    outcome: str  # "delivered" or a suppression reason code
    holdout: bool
    reason: str  # one human line
    context: dict[str, Any] = field(default_factory=dict)
    clock: str = "wall"
    schema: str = SCHEMA_DECISION


@dataclass(frozen=True, slots=True)
class NudgeTrigger:
    """A delivered trigger for messaging services (``nudge/1``)."""

    trigger_id: str
    customer_id: str
    rule: str
    step: int
    threshold: Threshold
    anchor_at: str
    due_at: str
    fired_at: str
    holdout: bool
    reason: str
    context: dict[str, Any]
    schema: str = SCHEMA_NUDGE


@dataclass(frozen=True, slots=True)
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
    schema: str = SCHEMA_OUTCOME


@dataclass(frozen=True, slots=True)
class SourcePosition:
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejected input message with everything needed to find and fix it."""

    error_code: str
    error: str
    source: SourcePosition
    original_base64: str  # whole message up to 160 KiB, else its head
    original_size: int
    original_truncated: bool
    original_sha256: str
    received_at: str
    original_text: str | None = None
    schema: str = SCHEMA_DEAD_LETTER
