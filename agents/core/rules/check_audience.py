"""Who a rule is for, checked (docs/rules.md "Checks"): its audience conditions -
order count, days since the first order, stage, spend, consent.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from agents.core.rules.abstract import Predicate
from agents.core.rules.audience import (
    CONSENT_MODES,
    PREDICATE_KEYS,
    Consent,
    DaysSinceFirstOrder,
    Orders,
    Spend,
    Stage,
)
from agents.core.rules.check_base import BaseChecker
from agents.core.stages import STAGES

_CURRENCY = re.compile(r"[A-Z]{3}")
_DECIMAL = re.compile(r"[0-9]{1,16}(?:\.[0-9]{1,15})?")


class AudienceChecks(BaseChecker):
    """A rule's audience table, one condition at a time."""

    def audience(self, raw: Any, path: str, line: int | None) -> tuple[Predicate, ...]:
        where = f"{path}.audience"
        if not isinstance(raw, dict):
            self.add(where, "the audience is a table of conditions", line)
            return ()
        out: list[Predicate] = []
        table = line
        for key, value in raw.items():
            at = f"{where}.{key}"
            line = self.lines.key(table, key)
            predicate: Predicate | None = None
            if key == "orders":
                bounds = self.bounds(value, at, line)
                predicate = None if bounds is None else Orders(*bounds)
            elif key == "days_since_first_order":
                bounds = self.bounds(value, at, line)
                predicate = None if bounds is None else DaysSinceFirstOrder(*bounds)
            elif key == "stage":
                predicate = self.stage(value, at, line)
            elif key == "spend":
                predicate = self.spend(value, at, line)
            elif key == "consent":
                if value in CONSENT_MODES:
                    predicate = Consent(value)
                else:
                    self.add(at, f"consent is one of {', '.join(CONSENT_MODES)}", line)
            else:
                self.add(
                    at,
                    f"{key!r} is not an audience condition this version knows "
                    f"({', '.join(PREDICATE_KEYS)})",
                    line,
                )
            if predicate is not None:
                out.append(predicate)
        return tuple(out)

    def bounds(self, raw: Any, at: str, line: int | None) -> tuple[int | None, int | None] | None:
        if not isinstance(raw, dict) or not raw:
            self.add(at, "write a range: { min = 1, max = 3 } (either bound may be left out)", line)
            return None
        ok = True
        for key, value in raw.items():
            if key not in ("min", "max"):
                self.add(f"{at}.{key}", "a range has only min and max", line)
                ok = False
            elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
                self.add(f"{at}.{key}", f"{key} is a whole number, 0 or more", line)
                ok = False
        low, high = raw.get("min"), raw.get("max")
        if ok and low is not None and high is not None and low > high:
            self.add(at, f"min {low} is above max {high}: nobody could match", line)
            ok = False
        return (low, high) if ok else None

    def stage(self, raw: Any, at: str, line: int | None) -> Stage | None:
        if not isinstance(raw, list) or not raw:
            self.add(at, f"stage is a list of stages ({', '.join(STAGES)})", line)
            return None
        bad = [s for s in raw if s not in STAGES]
        for s in bad:
            self.add(at, f"{s!r} is not a lifecycle stage ({', '.join(STAGES)})", line)
        return None if bad else Stage(frozenset(raw))

    def spend(self, raw: Any, at: str, line: int | None) -> Spend | None:
        if not isinstance(raw, dict):
            self.add(
                at, 'spend is { currency = "EUR", min = "50.00" } (either bound optional)', line
            )
            return None
        ok = True
        for key in raw:
            if key not in ("currency", "min", "max"):
                self.add(f"{at}.{key}", "spend has only currency, min and max", line)
                ok = False
        currency = raw.get("currency")
        if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
            self.add(f"{at}.currency", "the currency is a three-letter code such as EUR", line)
            ok = False
        amounts: dict[str, Decimal | None] = {"min": None, "max": None}
        for key in amounts:
            value = raw.get(key)
            if value is None:
                continue
            if not isinstance(value, str) or not _DECIMAL.fullmatch(value):
                self.add(
                    f"{at}.{key}",
                    f'{key} is an amount written as text, e.g. "50.00" (exact, no rounding)',
                    line,
                )
                ok = False
                continue
            try:
                amounts[key] = Decimal(value)
            except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
                ok = False
        low, high = amounts["min"], amounts["max"]
        if ok and low is None and high is None:
            self.add(at, "give spend a min, a max or both", line)
            ok = False
        if ok and low is not None and high is not None and low > high:
            self.add(at, f"min {low} is above max {high}: nobody could match", line)
            ok = False
        return Spend(str(currency), low, high) if ok else None
