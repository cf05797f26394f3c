"""Anchor kinds: where a rule's ladder starts (docs/rules.md "Rules file").

A ladder restarts at step 1 whenever its anchor moves; an anchor that does not
exist means the rule has nothing due.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from agents.core.rules.abstract import Anchor, Cancel, Facts, KeyedAnchor
from agents.core.rules.cancel import FurtherOrder, LaterEvent
from schemas.records import CART_CHECKOUT, CART_UPDATED, KIND_PURCHASE

# How a cart's ladder ends besides emptying it (docs/lifecycle.md "Rules"): an
# order with its cart id, or also any order holding one of its products.
EXIT_CART = "cart"
EXIT_ANY_PRODUCT = "any_product"
CART_EXITS = (EXIT_CART, EXIT_ANY_PRODUCT)
# The carts a customer's row keeps, so the keyed ladders one may run at once
# (agents.core.state.MAX_CARTS, held equal by tests/unit/agents/core/rules/test_contract.py).
KEYS_KEPT = 3
_OPEN = frozenset((CART_UPDATED, CART_CHECKOUT))


class _Anchor(Anchor):
    __slots__ = ()

    def cancel(self, kind: str) -> Cancel:
        return LaterEvent(kind)

    def canonical(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        min_orders = getattr(self, "min_orders", None)
        if min_orders is not None:
            out["min_orders"] = min_orders
        return out


@dataclass(frozen=True, slots=True)
class FirstOrder(_Anchor):
    """The first order's time, with >= 1 order.  Never later: an earlier order that
    arrives late moves it back (a new anchor)."""

    kind: ClassVar[str] = "first_order"

    def at(self, facts: Facts) -> int | None:
        return facts.first_order_at

    def cancel(self, kind: str) -> Cancel:
        return FurtherOrder() if kind == KIND_PURCHASE else LaterEvent(kind)

    def resolver(self, cancels: tuple[Cancel, ...]) -> Callable[[Facts], int | None]:
        if cancels == (FurtherOrder(),):
            # Today's second_purchase, on the hot path: one order and no other.
            return _only_order
        return super(FirstOrder, self).resolver(cancels)


def _only_order(facts: Facts) -> int | None:
    return facts.first_order_at if facts.orders == 1 else None


@dataclass(frozen=True, slots=True)
class LastOrder(_Anchor):
    """The newest order's time, with >= ``min_orders`` orders; every later order moves it."""

    min_orders: int = 1
    kind: ClassVar[str] = "last_order"

    def at(self, facts: Facts) -> int | None:
        return facts.last_order_at if facts.orders >= self.min_orders else None


@dataclass(frozen=True, slots=True)
class LastActivity(_Anchor):
    """The newest order or session, with >= ``min_orders`` orders (today's inactivity)."""

    min_orders: int = 1
    kind: ClassVar[str] = "last_activity"

    def at(self, facts: Facts) -> int | None:
        return facts.last_activity_at if facts.orders >= self.min_orders else None


@dataclass(frozen=True, slots=True)
class LastSession(_Anchor):
    """The newest session, with >= ``min_orders`` orders (default 0: prospects too)."""

    min_orders: int = 0
    kind: ClassVar[str] = "last_session"

    def at(self, facts: Facts) -> int | None:
        return facts.last_session_at if facts.orders >= self.min_orders else None


@dataclass(frozen=True, slots=True)
class Signup(_Anchor):
    """The sign-up's time, else the first session's, while the customer has no order:
    the welcome ladder ends with the first order (docs/lifecycle.md "Rules")."""

    kind: ClassVar[str] = "signup"

    def at(self, facts: Facts) -> int | None:
        if facts.orders >= 1:
            return None
        signup = facts.signup_at
        return facts.first_session_at if signup is None else signup


@dataclass(frozen=True, slots=True)
class LastView(_Anchor):
    """The newest product view's time, whatever the orders; with ``cancel_on =
    ["purchase"]`` an order after it ends the ladder (docs/lifecycle.md "Rules")."""

    kind: ClassVar[str] = "last_view"

    def at(self, facts: Facts) -> int | None:
        return facts.last_view_at

    def attribution_cap(self, steps: int) -> int | None:
        return steps


@dataclass(frozen=True, slots=True)
class Cart(KeyedAnchor):
    """One ladder per kept cart whose newest snapshot is open (``updated`` or
    ``checkout_started`` with items), anchored at that snapshot; it ends when the
    cart is ordered (``exit = "cart"``: an order with its cart id; ``"any_product"``:
    also an order holding one of its products) or emptied (docs/lifecycle.md
    "Rules").  An order of another cart does not end it."""

    exit: str = EXIT_CART
    kind: ClassVar[str] = "cart"

    def entry_at(self, entry: Any) -> int | None:
        if entry.action not in _OPEN or not entry.items or entry.ordered_at is not None:
            return None
        if self.exit == EXIT_ANY_PRODUCT and entry.matched_at is not None:
            return None
        at: int = entry.at
        return at

    def cancel(self, kind: str) -> Cancel:
        return LaterEvent(kind)

    def attribution_cap(self, steps: int) -> int | None:
        return steps * KEYS_KEPT

    def canonical(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.exit != EXIT_CART:
            out["exit"] = self.exit
        return out


ANCHORS: dict[str, type[Anchor]] = {
    a.kind: a for a in (FirstOrder, LastOrder, LastActivity, LastSession, Signup, LastView, Cart)
}
# The least ``min_orders`` each kind accepts (a last order needs an order).
MIN_ORDERS_FLOOR = {"last_order": 1, "last_activity": 0, "last_session": 0}
