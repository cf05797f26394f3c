"""The lifecycle's facts in the offline reference (docs/lifecycle.md), read from the
design with this module's own code: no import of the engine's state, rules or plans.

One customer's deduplicated events, in the order the reference takes them (event
time, file order among equal times), give the facts *as of* any instant D (the
events dated at or before D).  Views, sign-ups, sessions and carts are read
declaratively (a minimum, a maximum, the newest few); orders and cancellations
are folded in time order, because what a cancellation undoes depends on what the
bounded order log still holds.

The reading, where the design leaves a choice (the engine must agree):

* **Views** are not activity.  ``views`` as of D: each product's newest view time
  at or before D, the newest :data:`MAX_VIEWS` products by (time descending,
  product id ascending).
* **Carts**: a cart's winning snapshot as of D is its newest by event time; at
  equal times ``emptied`` > ``checkout_started`` > ``updated``, then the larger
  ``orjson.dumps`` of its items as wire lists (``[[product_id, quantity,
  unit_price, currency], ...]``).  ``updated``/``checkout_started`` with no item
  reads as ``emptied``.  Kept carts: the :data:`MAX_CARTS` carts with the newest
  winning snapshot (ties: smaller cart id).  ``ordered_at``: the newest placed
  order with the cart's id in ``[at, D]``; ``matched_at``: the newest placed order
  in ``[at, D]`` whose items share a product id with the winning snapshot.  (A cart
  kept as of D was kept at every instant since its snapshot, so this is what a
  time-ordered fold that forgets evicted carts gives.)  At one instant events are
  folded by event id (the engine's pending order): an order at the instant of its
  cart's snapshot counts for ``ordered_at`` when its event id sorts after the
  cart's first snapshot's, for ``matched_at`` after the winning snapshot's (the
  engine cannot look back at orders it folded before the snapshot; the design's
  "at or after" holds for an order at a later instant).  A cancellation does not
  reopen a cart: ``ordered_at``/``matched_at`` count placed orders, cancelled or not.
  ``first_cart_at``: the earliest snapshot with items (any cart, kept or not);
  ``first_checkout_at``: the earliest ``checkout_started`` with items.
* **Orders and cancellations** (fold, by time then event id): an order is
  entered in the log ``(at, key, amount, currency)`` ordered by (at, key); an entry
  neither among the first :data:`LOG_FIRST` nor the newest :data:`LOG_NEWEST` is
  dropped.  A cancellation whose order id no earlier order of the customer carried
  waits (at most :data:`MAX_PENDING_CANCELS`, by (time, key), the oldest dropped
  and counted); when its order comes they are applied at once after it.  A
  cancellation of an order not in the log while the log holds every order, or of
  one of the newest 8 orders cancelled in full, changes nothing (it was cancelled
  already).  Otherwise the event's amount is added to ``refunded`` under its
  currency's spend slot (the currency if the customer has spend in it, else XXX).
  ``full`` of a logged order removes the entry: orders - 1, its remaining amount
  leaves its currency's spend, that currency's order count - 1.  ``full`` of an
  order seen but not logged (a middle one of > 35): orders - 1, the event's amount
  leaves its slot (never below 0), the slot's count - 1.  ``partial``: the amount
  leaves the slot and, in the same currency, the logged entry's amount (never below
  0); orders unchanged.  Orders, first/second/last order, the k-th order and the
  cadence's order times are read from the count and the log; activity (sessions,
  placed orders, the churn model's order days) is not undone.
* Sign-ups, views, carts and cancellations are not activity.
"""

from __future__ import annotations

import hashlib
import uuid
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal, localcontext

import orjson

from agents.core.ids import TRIGGER_NAMESPACE
from agents.core.timeutil import iso
from schemas.records import (
    CANCEL_FULL,
    CART_CHECKOUT,
    CART_EMPTIED,
    CART_UPDATED,
    KIND_CANCEL,
    KIND_CART,
    KIND_PURCHASE,
    KIND_SESSION,
    KIND_SIGNUP,
    KIND_VIEW,
    Event,
    Item,
)

# The design's bounds (docs/lifecycle.md "Facts"), written out here, not imported
# from the engine's state: the reference is a second reading.
MAX_VIEWS = 5
MAX_CARTS = 3
LOG_FIRST = 3
LOG_NEWEST = 32
MAX_PENDING_CANCELS = 8
# Equal-time snapshots of one cart: the higher rank wins.
ACTION_RANK = {CART_UPDATED: 0, CART_CHECKOUT: 1, CART_EMPTIED: 2}
OPEN_ACTIONS = (CART_UPDATED, CART_CHECKOUT)
OTHER = "XXX"  # ISO 4217 "no currency": where spend without a slot of its own goes


def order_key(order_id: str) -> str:
    """The first 16 hex digits of sha256 of the order id (the log's key)."""
    return hashlib.sha256(order_id.encode()).hexdigest()[:16]


def cart_value(items: Iterable[Item]) -> dict[str, str]:
    """Per currency, the exact sum of quantity x unit_price (``format(sum, "f")``)."""
    totals: dict[str, Decimal] = {}
    with localcontext(prec=80):
        for item in items:
            totals[item.currency] = totals.get(item.currency, Decimal(0)) + item.quantity * Decimal(
                item.unit_price
            )
    return {c: format(v, "f") for c, v in sorted(totals.items())}


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One cart/1 event."""

    cart_id: str
    at: int
    action: str  # empty open snapshots already read as emptied
    items: tuple[Item, ...]
    event_id: str = ""

    @property
    def rank(self) -> tuple[int, int, bytes]:
        wire = orjson.dumps([list(i) for i in self.items])
        return (self.at, ACTION_RANK[self.action], wire)

    @property
    def is_open(self) -> bool:
        return self.action in OPEN_ACTIONS and bool(self.items)


@dataclass(frozen=True, slots=True)
class Cart:
    """A kept cart as of some instant (the engine's CartEntry without progress)."""

    cart_id: str
    at: int
    action: str
    items: tuple[Item, ...]
    ordered_at: int | None
    matched_at: int | None

    def context(self) -> dict[str, object]:
        """The nudge's ``cart`` context (docs/lifecycle.md "Rules")."""
        return {
            "cart_id": self.cart_id,
            "action": self.action,
            "items": [
                {
                    "product_id": i.product_id,
                    "quantity": i.quantity,
                    "unit_price": i.unit_price,
                    "currency": i.currency,
                }
                for i in self.items
            ],
            "value": cart_value(self.items),
        }


@dataclass(frozen=True, slots=True)
class Placed:
    """A counted (deduplicated) order, cancelled or not."""

    at: int
    order_id: str
    cart_id: str | None
    products: frozenset[str]
    event_id: str = ""


@dataclass(slots=True)
class Logged:
    at: int
    key: str
    amount: Decimal
    currency: str


@dataclass(frozen=True, slots=True)
class Orders:
    """The net order facts after some prefix of the fold."""

    count: int = 0
    log: tuple[tuple[int, str, Decimal, str], ...] = ()  # (at, key, amount, currency)
    spend: tuple[tuple[str, Decimal], ...] = ()  # by currency, sorted
    currencies: tuple[tuple[str, int], ...] = ()  # orders per currency, sorted
    pending: tuple[tuple[str, int, str, Decimal, str], ...] = ()  # key, at, scope, amount, cur
    cancelled: int = 0
    partial: int = 0
    dropped: int = 0
    refunded: tuple[tuple[str, Decimal], ...] = ()

    @property
    def times(self) -> tuple[int, ...]:
        return tuple(at for at, _, _, _ in self.log)

    @property
    def first(self) -> int | None:
        return self.log[0][0] if self.count and self.log else None

    @property
    def second(self) -> int | None:
        return self.log[1][0] if self.count >= 2 and len(self.log) >= 2 else None

    @property
    def last(self) -> int | None:
        return self.log[-1][0] if self.count and self.log else None


@dataclass(slots=True)
class _Fold:
    """The order/cancellation fold's working state."""

    count: int = 0
    log: list[Logged] = field(default_factory=list)
    spend: dict[str, Decimal] = field(default_factory=dict)
    currencies: dict[str, int] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)  # keys of orders taken
    pending: list[tuple[str, int, str, Decimal, str]] = field(default_factory=list)
    cancelled: int = 0
    partial: int = 0
    dropped: int = 0
    refunded: dict[str, Decimal] = field(default_factory=dict)
    # The newest MAX_PENDING_CANCELS orders cancelled in full: a second cancellation
    # of one of them changes nothing.
    gone: tuple[str, ...] = ()
    # (t, rank, kind) of what moves the order count, for the stage walk:
    # "order" (placed: activity) and "cancel" (a full cancellation taking one away).
    moves: list[tuple[int, str]] = field(default_factory=list)

    def frozen(self) -> Orders:
        return Orders(
            count=self.count,
            log=tuple((e.at, e.key, e.amount, e.currency) for e in self.log),
            spend=tuple(sorted(self.spend.items())),
            currencies=tuple(sorted(self.currencies.items())),
            pending=tuple(self.pending),
            cancelled=self.cancelled,
            partial=self.partial,
            dropped=self.dropped,
            refunded=tuple(sorted(self.refunded.items())),
        )

    def _slot(self, currency: str) -> str:
        """Where a cancellation's amount is taken from: its currency's spend when the
        customer has one, else XXX (where the currencies without a slot are)."""
        return currency if currency in self.spend else OTHER

    def _less(self, currency: str, amount: Decimal) -> None:
        slot = self._slot(currency)
        if slot in self.spend:
            with localcontext(prec=80):
                self.spend[slot] = max(Decimal(0), self.spend[slot] - amount)

    def _count_off(self, currency: str) -> None:
        slot = self._slot(currency)
        n = self.currencies.get(slot, 0) - 1
        if n > 0:
            self.currencies[slot] = n
        else:
            self.currencies.pop(slot, None)

    def order(self, at: int, order_id: str, amount: Decimal, currency: str) -> None:
        key = order_key(order_id)
        self.seen.add(key)
        self.count += 1
        self.moves.append((at, "order"))
        with localcontext(prec=80):
            self.spend[currency] = self.spend.get(currency, Decimal(0)) + amount
        self.currencies[currency] = self.currencies.get(currency, 0) + 1
        self.log.append(Logged(at, key, amount, currency))
        self.log.sort(key=lambda e: (e.at, e.key))
        if len(self.log) > LOG_FIRST + LOG_NEWEST:
            del self.log[LOG_FIRST]
        waiting = [p for p in self.pending if p[0] == key]
        if waiting:
            self.pending = [p for p in self.pending if p[0] != key]
            for _, _, scope, amt, cur in waiting:
                self._apply(at, key, scope, amt, cur)

    def cancel(self, at: int, order_id: str, scope: str, amount: Decimal, currency: str) -> None:
        key = order_key(order_id)
        if key not in self.seen:
            self.pending.append((key, at, scope, amount, currency))
            self.pending.sort(key=lambda p: (p[1], p[0]))
            if len(self.pending) > MAX_PENDING_CANCELS:
                del self.pending[0]
                self.dropped += 1
            return
        self._apply(at, key, scope, amount, currency)

    def _apply(self, at: int, key: str, scope: str, amount: Decimal, currency: str) -> None:
        entry = next((e for e in self.log if e.key == key), None)
        if entry is None and (self.count <= len(self.log) or key in self.gone):
            return  # cancelled in full already: nothing is left to cancel
        slot = self._slot(currency)
        with localcontext(prec=80):
            self.refunded[slot] = self.refunded.get(slot, Decimal(0)) + amount
        if scope != CANCEL_FULL:
            self.partial += 1
            self._less(currency, amount)
            if entry is not None and entry.currency == currency:
                with localcontext(prec=80):
                    entry.amount = max(Decimal(0), entry.amount - amount)
            return
        self.cancelled += 1
        self.gone = (*self.gone, key)[-MAX_PENDING_CANCELS:]
        if entry is not None:
            self.log.remove(entry)
            self._less(entry.currency, entry.amount)
            self._count_off(entry.currency)
        else:
            self._less(currency, amount)
            self._count_off(currency)
        if self.count:
            self.count -= 1
            self.moves.append((at, "cancel"))


class History:
    """One customer's lifecycle facts through time (module docstring)."""

    def __init__(self, events: Iterable[Event]) -> None:
        """``events``: the customer's taken events, folded by (time, event id)."""
        self.signups: list[int] = []
        self.sessions: list[int] = []
        self.views: list[tuple[int, str]] = []
        self.snapshots: list[Snapshot] = []
        self.placed: list[Placed] = []
        self.cancel_times: list[int] = []
        fold = _Fold()
        # The order facts after each instant's events: (time, Orders), ascending.
        self._times: list[int] = []
        self._orders: list[Orders] = []
        for e in sorted(events, key=lambda e: (e.occurred_at, e.event_id)):
            t = e.occurred_at
            if e.kind == KIND_SIGNUP:
                self.signups.append(t)
            elif e.kind == KIND_SESSION:
                self.sessions.append(t)
            elif e.kind == KIND_VIEW:
                assert e.product_id is not None
                self.views.append((t, e.product_id))
            elif e.kind == KIND_CART:
                assert e.cart_id is not None and e.action is not None
                items = e.items or ()
                action = e.action if items else CART_EMPTIED
                self.snapshots.append(Snapshot(e.cart_id, t, action, tuple(items), e.event_id))
            elif e.kind == KIND_PURCHASE:
                assert e.order_id is not None and e.amount is not None
                self.placed.append(
                    Placed(
                        t,
                        e.order_id,
                        e.cart_id,
                        frozenset(i.product_id for i in e.items or ()),
                        e.event_id,
                    )
                )
                fold.order(t, e.order_id, Decimal(e.amount), e.currency or "XXX")
            elif e.kind == KIND_CANCEL:
                assert e.order_id is not None and e.amount is not None and e.action is not None
                self.cancel_times.append(t)
                fold.cancel(t, e.order_id, e.action, Decimal(e.amount), e.currency or "XXX")
            else:
                continue
            if e.kind in (KIND_PURCHASE, KIND_CANCEL):
                if self._times and self._times[-1] == t:
                    self._orders[-1] = fold.frozen()
                else:
                    assert not self._times or self._times[-1] < t, "events must come in time order"
                    self._times.append(t)
                    self._orders.append(fold.frozen())
        self.moves = fold.moves
        self.times = sorted(
            {
                *self.signups,
                *self.sessions,
                *(t for t, _ in self.views),
                *(s.at for s in self.snapshots),
                *self._times,
            }
        )

    @property
    def has_cancels(self) -> bool:
        return bool(self.cancel_times)

    # --- as of t ------------------------------------------------------------------

    def orders(self, t: int | None = None) -> Orders:
        n = len(self._times) if t is None else bisect_right(self._times, t)
        return self._orders[n - 1] if n else Orders()

    def signup_at(self, t: int) -> int | None:
        return min((x for x in self.signups if x <= t), default=None)

    def first_session_at(self, t: int) -> int | None:
        return min((x for x in self.sessions if x <= t), default=None)

    def first_view_at(self, t: int) -> int | None:
        return min((x for x, _ in self.views if x <= t), default=None)

    def last_view_at(self, t: int) -> int | None:
        return max((x for x, _ in self.views if x <= t), default=None)

    def newest_views(self, t: int) -> list[tuple[int, str]]:
        """(time, product) of the newest MAX_VIEWS distinct products, newest first."""
        newest: dict[str, int] = {}
        for x, p in self.views:
            if x <= t and x > newest.get(p, -1):
                newest[p] = x
        return sorted(((x, p) for p, x in newest.items()), key=lambda v: (-v[0], v[1]))[:MAX_VIEWS]

    def carts(self, t: int) -> list[Cart]:
        """The kept carts as of t, newest snapshot first (ties: smaller cart id)."""
        winning: dict[str, Snapshot] = {}
        for s in self.snapshots:
            if s.at <= t:
                old = winning.get(s.cart_id)
                if old is None or s.rank > old.rank:
                    winning[s.cart_id] = s
        kept = sorted(winning.values(), key=lambda s: (-s.at, s.cart_id))[:MAX_CARTS]
        out = []
        for s in kept:
            first = min((x.at, x.event_id) for x in self.snapshots if x.cart_id == s.cart_id)
            after = [o for o in self.placed if s.at <= o.at <= t]
            products = {i.product_id for i in s.items}
            # At one instant, the fold's order decides (module docstring).
            ordered = max(
                (o.at for o in after if o.cart_id == s.cart_id and (o.at, o.event_id) > first),
                default=None,
            )
            matched = max(
                (
                    o.at
                    for o in after
                    if o.products & products and (o.at, o.event_id) > (s.at, s.event_id)
                ),
                default=None,
            )
            out.append(Cart(s.cart_id, s.at, s.action, s.items, ordered, matched))
        return out

    def cart(self, cart_id: str, t: int) -> Cart | None:
        return next((c for c in self.carts(t) if c.cart_id == cart_id), None)

    def cart_ids(self) -> list[str]:
        return sorted({s.cart_id for s in self.snapshots})

    def first_cart_at(self, t: int) -> int | None:
        return min((s.at for s in self.snapshots if s.at <= t and s.is_open), default=None)

    def first_checkout_at(self, t: int) -> int | None:
        return min(
            (s.at for s in self.snapshots if s.at <= t and s.is_open and s.action == CART_CHECKOUT),
            default=None,
        )


def trigger_id(customer_id: str, rule: str, step: int, anchor_at: int, key: str | None) -> str:
    """A decision's trigger id: today's uuid5 for an unkeyed ladder; a keyed one adds
    the cart id, ``customer \\x1f rule \\x1f step \\x1f anchor_iso \\x1f cart_id``
    (docs/lifecycle.md "Rules"), computed here with ``uuid`` itself."""
    name = f"{customer_id}\x1f{rule}\x1f{step}\x1f{iso(anchor_at)}"
    if key is not None:
        name += f"\x1f{key}"
    return str(uuid.uuid5(TRIGGER_NAMESPACE, name))
