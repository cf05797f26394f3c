"""Audience predicates: who a step is for, evaluated at its due time D on the facts
as of D (docs/rules.md "Rules file").  All of a rule's predicates must hold; a step
whose audience does not hold is skipped (no decision) and the ladder moves on."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

from agents.core.rules.abstract import Facts, Predicate
from agents.core.timeutil import MICROS_PER_DAY
from schemas.records import CONSENT_OPTED_IN, CONSENT_OPTED_OUT

CONSENT_NOT_OPTED_OUT = "not_opted_out"
CONSENT_MODES = (CONSENT_NOT_OPTED_OUT, CONSENT_OPTED_IN)


@dataclass(frozen=True, slots=True)
class Orders(Predicate):
    """The order count as of D within [min, max] (either bound optional)."""

    min: int | None = None
    max: int | None = None
    key: ClassVar[str] = "orders"

    def holds(self, facts: Facts, due_at: int) -> bool:
        n = facts.orders
        return (self.min is None or n >= self.min) and (self.max is None or n <= self.max)

    def canonical(self) -> Any:
        return {"min": self.min, "max": self.max}


@dataclass(frozen=True, slots=True)
class Stage(Predicate):
    """The lifecycle stage as of D is one of ``stages``."""

    stages: frozenset[str]
    key: ClassVar[str] = "stage"

    def holds(self, facts: Facts, due_at: int) -> bool:
        return facts.stage in self.stages

    def canonical(self) -> Any:
        return sorted(self.stages)


@dataclass(frozen=True, slots=True)
class Spend(Predicate):
    """The total spend in ``currency`` as of D within [min, max] (exact decimals)."""

    currency: str
    min: Decimal | None = None
    max: Decimal | None = None
    key: ClassVar[str] = "spend"

    def holds(self, facts: Facts, due_at: int) -> bool:
        total = Decimal(facts.spend.get(self.currency, "0"))
        return (self.min is None or total >= self.min) and (self.max is None or total <= self.max)

    def canonical(self) -> Any:
        return {"currency": self.currency, "min": _decimal(self.min), "max": _decimal(self.max)}


@dataclass(frozen=True, slots=True)
class Consent(Predicate):
    """``not_opted_out`` (no consent, or the latest as of D is not opted_out) or
    ``opted_in`` (the latest consent as of D is opted_in)."""

    mode: str
    key: ClassVar[str] = "consent"

    def holds(self, facts: Facts, due_at: int) -> bool:
        if self.mode == CONSENT_OPTED_IN:
            return facts.consent_status == CONSENT_OPTED_IN
        return facts.consent_status != CONSENT_OPTED_OUT

    def canonical(self) -> Any:
        return self.mode


@dataclass(frozen=True, slots=True)
class DaysSinceFirstOrder(Predicate):
    """Whole days from the first order to D within [min, max]; false without an order."""

    min: int | None = None
    max: int | None = None
    key: ClassVar[str] = "days_since_first_order"

    def holds(self, facts: Facts, due_at: int) -> bool:
        first = facts.first_order_at
        if first is None:
            return False
        days = (due_at - first) // MICROS_PER_DAY
        return (self.min is None or days >= self.min) and (self.max is None or days <= self.max)

    def canonical(self) -> Any:
        return {"min": self.min, "max": self.max}


def _decimal(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")


PREDICATES = (Orders, Stage, Spend, Consent, DaysSinceFirstOrder)
PREDICATE_KEYS = tuple(p.key for p in PREDICATES)
