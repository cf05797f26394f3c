"""When a rule fires, checked (docs/rules.md "Checks"): its anchor, the event kinds
that cancel it, and its steps (fixed durations or one cadence step).
"""

from __future__ import annotations

from typing import Any

from agents.core.rules.abstract import Anchor, Step
from agents.core.rules.anchors import (
    ANCHORS,
    MIN_ORDERS_FLOOR,
    FirstOrder,
    LastActivity,
    LastOrder,
    LastSession,
)
from agents.core.rules.cancel import EVENT_KINDS
from agents.core.rules.check_base import BaseChecker
from agents.core.rules.model import MAX_LADDER_STEPS
from agents.core.rules.steps import Cadence, Fixed

MAX_MIN_ORDERS = 1000


class TimingChecks(BaseChecker):
    """A rule's anchor, cancels and steps."""

    def anchor(self, raw: Any, path: str, line: int | None) -> Anchor | None:
        where = f"{path}.anchor"
        kinds = ", ".join(ANCHORS)
        if raw is None:
            self.add(where, f"every rule needs an anchor ({kinds})", line)
            return None
        params: dict[str, Any] = {}
        if isinstance(raw, dict):
            kind = raw.get("kind")
            params = {k: v for k, v in raw.items() if k != "kind"}
        else:
            kind = raw
        cls = ANCHORS.get(kind) if isinstance(kind, str) else None
        if kind is None:
            self.add(
                where, f'write the anchor\'s kind: {{ kind = "last_order", ... }} ({kinds})', line
            )
            return None
        if cls is None:
            self.add(where, f"{kind!r} is not an anchor this version knows ({kinds})", line)
            return None
        known = () if cls is FirstOrder else ("min_orders",)
        for key in params:
            if key not in known:
                self.add(f"{where}.{key}", f"the {kind} anchor has no setting {key!r}", line)
        if "min_orders" not in params or cls is FirstOrder:
            return cls()
        n = params["min_orders"]
        low = MIN_ORDERS_FLOOR[cls.kind]
        if isinstance(n, bool) or not isinstance(n, int) or not low <= n <= MAX_MIN_ORDERS:
            self.add(
                f"{where}.min_orders",
                f"min_orders is a whole number from {low} to {MAX_MIN_ORDERS}",
                line,
            )
            return None
        return cls(min_orders=n)  # type: ignore[call-arg]

    def cancel_on(self, raw: Any, path: str, line: int | None) -> tuple[str, ...]:
        where = f"{path}.cancel_on"
        if not isinstance(raw, list):
            self.add(where, 'cancel_on is a list of event kinds, e.g. ["purchase"]', line)
            return ()
        out: list[str] = []
        for i, kind in enumerate(raw, 1):
            if kind not in EVENT_KINDS:
                self.add(
                    f"{where}[{i}]",
                    f"{kind!r} is not an event kind ({', '.join(EVENT_KINDS)})",
                    line,
                )
            elif kind in out:
                self.add(f"{where}[{i}]", f"{kind!r} is listed twice", line)
            else:
                out.append(kind)
        return tuple(out)

    def steps(self, raw: Any, path: str, line: int | None) -> tuple[Step, ...]:
        where = f"{path}.steps"
        if not isinstance(raw, list) or not raw:
            self.add(
                where, 'every rule needs steps: a list of durations such as ["P7D", "P14D"]', line
            )
            return ()
        if len(raw) > MAX_LADDER_STEPS:
            self.add(where, f"{len(raw)} steps: a rule has at most {MAX_LADDER_STEPS}", line)
        out: list[Step] = []
        for i, item in enumerate(raw, 1):
            at = f"{where}[{i}]"
            if isinstance(item, dict):
                if len(raw) > 1:
                    self.add(
                        at,
                        "a cadence step must be the rule's only step (its time is per customer, "
                        "so it cannot be ordered among fixed steps)",
                        line,
                    )
                cadence = self.cadence(item, at, line)
                if cadence is not None:
                    out.append(cadence)
                continue
            micros = self.micros(item, at, line)
            if micros is None:
                continue
            previous = out[-1] if out else None
            if isinstance(previous, Fixed) and micros <= previous.micros:
                self.add(
                    at,
                    f"{item} is not later than the step before it: steps must be strictly "
                    "increasing",
                    line,
                )
            out.append(Fixed(micros))
        return tuple(out)

    def settled(
        self,
        anchor: Anchor,
        cancel_on: tuple[str, ...],
        steps: tuple[Step, ...],
        path: str,
        line: int | None,
    ) -> None:
        """Refuse the shapes whose step could fall due before the event that makes it
        due (docs/rules.md "Checks"): a decision is never dated before its cause.

        A cadence step's time depends on the customer's orders, so every order must
        move the anchor (or, from the first order, end the ladder); an order count
        that makes a session-anchored ladder exist would date its steps from a session
        before that order - an audience ``orders`` says the same at the due time."""
        if isinstance(anchor, LastSession) and anchor.min_orders > 0:
            self.add(
                f"{path}.anchor.min_orders",
                "a last_session anchor cannot wait for orders (its steps would be due before "
                "the order that starts them): use audience.orders = { min = "
                f"{anchor.min_orders} }} instead",
                line,
            )
        moved_by_orders = isinstance(anchor, LastOrder | LastActivity) or (
            isinstance(anchor, FirstOrder) and "purchase" in cancel_on
        )
        if any(isinstance(step, Cadence) for step in steps) and not moved_by_orders:
            self.add(
                f"{path}.steps",
                "a cadence step needs an anchor every order moves (last_order, last_activity) "
                'or first_order with cancel_on = ["purchase"]: otherwise a new order would '
                "change a due time already passed",
                line,
            )

    def cadence(self, raw: dict[str, Any], at: str, line: int | None) -> Cadence | None:
        for key in raw:
            if key not in ("cadence", "floor"):
                self.add(f"{at}.{key}", f"a cadence step has no setting {key!r}", line)
        k = raw.get("cadence")
        if isinstance(k, bool) or not isinstance(k, int | float) or not 1 <= k <= 100:
            self.add(
                f"{at}.cadence",
                "cadence is how many of the customer's usual gaps between orders to wait: "
                "a number from 1 to 100",
                line,
            )
            return None
        if "floor" not in raw:
            self.add(f"{at}.floor", 'a cadence step needs a floor, e.g. floor = "P7D"', line)
            return None
        floor = self.micros(raw["floor"], f"{at}.floor", line)
        return None if floor is None else Cadence(float(k), floor)
