"""When a rule fires, checked (docs/rules.md "Checks"): its anchor, the event kinds
that cancel it, and its steps (fixed durations or one cadence step).
"""

from __future__ import annotations

from typing import Any

from agents.core.rules.abstract import Anchor, Step
from agents.core.rules.anchors import (
    ANCHORS,
    CART_EXITS,
    EXIT_CART,
    MIN_ORDERS_FLOOR,
    Cart,
    FirstOrder,
    LastActivity,
    LastOrder,
    LastSession,
)
from agents.core.rules.cancel import EVENT_KINDS
from agents.core.rules.check_base import BaseChecker, Where
from agents.core.rules.model import MAX_LADDER_STEPS
from agents.core.rules.steps import (
    MAX_ANNIVERSARY,
    MAX_MILESTONE_ORDER,
    Anniversary,
    Cadence,
    Fixed,
    OrderMilestone,
)
from schemas.records import KIND_PURCHASE

MAX_MIN_ORDERS = 1000
# The settings each anchor kind takes besides its kind.
ANCHOR_SETTINGS: dict[str, tuple[str, ...]] = {
    "last_order": ("min_orders",),
    "last_activity": ("min_orders",),
    "last_session": ("min_orders",),
    "cart": ("exit",),
}


def milestone_kind(raw: list[Any]) -> str | None:
    """ "order" or "anniversary" when a rule's steps are (some of them) milestones."""
    for item in raw:
        if isinstance(item, dict):
            for kind in ("order", "anniversary"):
                if kind in item:
                    return kind
    return None


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
        known = ANCHOR_SETTINGS.get(kind, ())
        for key in params:
            if key not in known:
                self.add(f"{where}.{key}", f"the {kind} anchor has no setting {key!r}", line)
        if cls is Cart:
            return self.cart_anchor(params, where, line)
        if "min_orders" not in params or "min_orders" not in known:
            return cls()
        n = params["min_orders"]
        low = MIN_ORDERS_FLOOR[kind]
        if isinstance(n, bool) or not isinstance(n, int) or not low <= n <= MAX_MIN_ORDERS:
            self.add(
                f"{where}.min_orders",
                f"min_orders is a whole number from {low} to {MAX_MIN_ORDERS}",
                line,
            )
            return None
        return cls(min_orders=n)  # type: ignore[call-arg]

    def cart_anchor(self, params: dict[str, Any], where: str, line: int | None) -> Anchor | None:
        exit_ = params.get("exit", EXIT_CART)
        if exit_ not in CART_EXITS:
            self.add(
                f"{where}.exit",
                f"exit is {' or '.join(repr(e) for e in CART_EXITS)}: what order ends a cart's "
                "ladder (one with its cart id, or also one holding any of its products)",
                line,
            )
            return None
        return Cart(exit_)

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
        kind = milestone_kind(raw)
        if kind is not None:
            return self.milestones(raw, kind, where, line)
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

    def milestones(
        self, raw: list[Any], kind: str, where: str, line: int | None
    ) -> tuple[Step, ...]:
        """Milestone steps (docs/lifecycle.md "Rules"): all ``{ order = k }`` or all
        ``{ anniversary = n }``, strictly increasing."""
        high = MAX_MILESTONE_ORDER if kind == "order" else MAX_ANNIVERSARY
        what = "the k-th order" if kind == "order" else "years after the first order"
        out: list[Step] = []
        previous: int | None = None
        for i, item in enumerate(raw, 1):
            at = f"{where}[{i}]"
            if not isinstance(item, dict) or kind not in item:
                self.add(
                    at,
                    f"{kind} steps cannot be mixed with other steps in one rule: a milestone "
                    f"rule's steps are all {{ {kind} = ... }}",
                    line,
                )
                continue
            for key in item:
                if key != kind:
                    self.add(f"{at}.{key}", f"a {kind} step has no setting {key!r}", line)
            n = item[kind]
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= high:
                self.add(f"{at}.{kind}", f"{kind} is {what}: a whole number from 1 to {high}", line)
                continue
            if previous is not None and n <= previous:
                self.add(
                    f"{at}.{kind}",
                    f"{n} is not after the step before it ({previous}): steps must be strictly "
                    "increasing",
                    line,
                )
            previous = n
            out.append(OrderMilestone(n) if kind == "order" else Anniversary(n))
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

    def lifecycle_shapes(
        self,
        anchor: Anchor,
        cancel_on: tuple[str, ...],
        steps: tuple[Step, ...],
        path: str,
        at: Where,
    ) -> None:
        """The lifecycle's shapes (docs/lifecycle.md "Rules"): milestones count from
        the first order and must outlive the second; a cart's own exit ends its ladder."""
        milestone = any(isinstance(step, OrderMilestone | Anniversary) for step in steps)
        if milestone and not isinstance(anchor, FirstOrder):
            self.add(
                f"{path}.anchor",
                'order and anniversary steps need anchor = "first_order": they count from '
                "the first order",
                at("anchor"),
            )
        if milestone and KIND_PURCHASE in cancel_on:
            self.add(
                f"{path}.cancel_on",
                'a milestone rule cannot have cancel_on = ["purchase"]: the second order '
                "would end it before any milestone",
                at("cancel_on"),
            )
        if isinstance(anchor, Cart) and KIND_PURCHASE in cancel_on:
            self.add(
                f"{path}.cancel_on",
                "a cart anchor ends with its own order (its exit): an order of another cart "
                'must not end it, so cancel_on cannot name "purchase"',
                at("cancel_on"),
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
