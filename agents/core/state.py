"""Per-customer state and its order-independent transitions.

:class:`CustomerState` holds two kinds of things:

* **facts** folded from events (orders, spend, activity, consent).  Every fold is
  commutative (min / max / sum / set), so the facts come out the same whatever the
  arrival order - the property tests in ``tests/unit/agents/core`` check it;
* **progress** of each rule's ladder and the events still *pending* because they
  are dated after the clock (see :mod:`agents.core.engine`).
"""

from __future__ import annotations

import base64
import bisect
import hashlib
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any, NamedTuple

import orjson

from agents.core.budget import MAX_CURRENCIES, MAX_RECOVERED_CURRENCIES, OTHER_CURRENCY
from agents.core.dedup import OrderFilter, RecentIds
from agents.core.ids import trigger_id
from agents.core.pending import PendingLimits, PendingQueue, Spill
from agents.core.stages import (
    STAGE_AT_RISK,
    STAGE_LAPSED,
    STAGE_NEW,
    STAGE_PROSPECT,
    STAGE_REACTIVATED,
    STAGE_REPEAT,
)
from agents.core.stages import STAGES as STAGES  # where reports read the stages from
from agents.core.timeutil import MICROS_PER_DAY, iso
from schemas.records import (
    CANCEL_FULL,
    CART_CHECKOUT,
    CART_EMPTIED,
    CART_UPDATED,
    CONSENT_OPTED_OUT,
    KIND_CANCEL,
    KIND_CART,
    KIND_CONSENT,
    KIND_PURCHASE,
    KIND_SESSION,
    KIND_SIGNUP,
    KIND_VIEW,
    Event,
    Item,
)

# Order times kept for the cadence (median gap) of the overdue rule.
MAX_ORDER_TIMES = 32
# Days the order-day bitmap covers, ending at the newest order day: 27 years
# (docs/prediction.md "State").
ORDER_DAYS_SPAN = 10_000
# The lifecycle's bounds (docs/lifecycle.md "Facts"): the newest distinct viewed
# products, the carts with the newest snapshots, the orders kept for undoing a
# cancellation exactly (the first ORDER_LOG_FIRST and the newest ORDER_LOG_NEWEST),
# and cancellations waiting for their order.
MAX_VIEWS = 5
MAX_CARTS = 3
ORDER_LOG_FIRST = 3
ORDER_LOG_NEWEST = 32
MAX_PENDING_CANCELS = 8
# Activity spans kept for the retention rate (one per break longer than the
# active window, so only customers who lapse and return very often reach it).
MAX_ACTIVE_SPANS = 64


@dataclass(slots=True)
class RecentFiring:
    """A firing the record still remembers, for the guardrails, the attribution of
    conversions and lookups.  Stored in the row as the list
    ``[due_at, rule, step, anchor_at, outcome, converted_at | None]`` (docs/design.md),
    with a seventh element ``sent_at`` only for a firing whose rule had a send window
    (docs/send-windows.md "Deferred firings"), so rows without windows read and write
    byte-identical; an eighth, ``key``, only for a keyed ladder's firing (its cart
    id: docs/lifecycle.md "Rules"), ``sent_at`` then written even when None."""

    due_at: int
    rule: str
    step: int
    anchor_at: int
    outcome: str  # "delivered" or a suppression reason code
    converted_at: int | None = None  # the converting order's time, once attributed
    # When it was (or would have been) sent, set only when its rule had a window
    # (== due_at when the due time was inside it): gap, cap and attribution count
    # from the send time (docs/guardrails.md "Guardrails").
    sent_at: int | None = None
    # The cart id of a keyed ladder's firing: its conversion's trigger id names it.
    key: str | None = None

    @property
    def send_time(self) -> int:
        """The send time: ``sent_at`` with a window, else the due time."""
        sent = self.sent_at
        return self.due_at if sent is None else sent

    def to_wire(self) -> list[Any]:
        wire = [self.due_at, self.rule, self.step, self.anchor_at, self.outcome, self.converted_at]
        if self.sent_at is not None or self.key is not None:
            wire.append(self.sent_at)
        if self.key is not None:
            wire.append(self.key)
        return wire


@dataclass(slots=True)
class DeferredFiring:
    """A firing due outside its rule's send window, kept until its send time
    (docs/send-windows.md "Deferred firings"): at most one per rule.  Stored in the
    row under ``"df"`` (omitted when there is none) as the list
    ``[rule, step, anchor_at, due_at, send_at, threshold, rule_version, zone]``, with
    a ninth element, the cart id, only for a keyed ladder's (docs/lifecycle.md
    "Rules")."""

    rule: str
    step: int
    anchor_at: int
    due_at: int
    send_at: int
    threshold: int
    rule_version: str
    zone: str
    key: str | None = None

    def to_wire(self) -> list[Any]:
        wire = [
            self.rule,
            self.step,
            self.anchor_at,
            self.due_at,
            self.send_at,
            self.threshold,
            self.rule_version,
            self.zone,
        ]
        if self.key is not None:
            wire.append(self.key)
        return wire

    @staticmethod
    def from_wire(v: list[Any]) -> DeferredFiring:
        key = v[8] if len(v) > 8 else None
        return DeferredFiring(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], key)


@dataclass(slots=True)
class CartEntry:
    """A kept cart (docs/lifecycle.md "Facts"): its newest snapshot by event time
    (``at``, ``action``, ``items``), the newest order at or after it with its cart id
    (``ordered_at``) or sharing one of its products (``matched_at``), and the progress
    of the keyed ladders of this cart, ``{rule: [anchor, step]}``.  Stored in the row
    under ``"ct"`` (omitted when there is none)."""

    cart_id: str
    at: int
    action: str
    items: tuple[Item, ...]
    ordered_at: int | None = None
    matched_at: int | None = None
    progress: dict[str, list[Any]] = field(default_factory=dict)

    def to_wire(self) -> list[Any]:
        """``[cart_id, at, action, items, ordered_at, matched_at, progress]``."""
        return [
            self.cart_id,
            self.at,
            self.action,
            [item.to_wire() for item in self.items],
            self.ordered_at,
            self.matched_at,
            self.progress,
        ]

    @staticmethod
    def from_wire(v: list[Any]) -> CartEntry:
        return CartEntry(
            v[0], v[1], v[2], tuple(Item.from_wire(x) for x in v[3]), v[4], v[5], dict(v[6])
        )


@dataclass(slots=True)
class OrderEntry:
    """An order kept so a cancellation can undo it exactly (docs/lifecycle.md
    "Cancellations"): its time, ``key`` (the first 16 hex digits of sha256 of the
    order id), the amount left after partial cancellations (exact decimal string)
    and its currency.  Stored in the row under ``"ol"``."""

    at: int
    key: str
    amount: str
    currency: str

    def to_wire(self) -> list[Any]:
        return [self.at, self.key, self.amount, self.currency]


class OrderLog:
    """The order log (row key ``"ol"``, :class:`OrderEntry` as ``[at, key, amount,
    currency]``, by time), decoded only when read or changed: most slices that
    load a row (a view, a session) never touch it, and an ordering customer's log
    is most of its row's entries (docs/lifecycle.md "Facts")."""

    __slots__ = ("_entries", "_wire")

    def __init__(self, wire: list[Any] | None = None) -> None:
        self._wire = wire
        self._entries: list[OrderEntry] | None = None if wire is not None else []

    @property
    def entries(self) -> list[OrderEntry]:
        """The entries (a caller may change them: the wire is rebuilt from them)."""
        entries = self._entries
        if entries is None:
            assert self._wire is not None
            entries = self._entries = [OrderEntry(*e) for e in self._wire]
        self._wire = None
        return entries

    def __bool__(self) -> bool:
        return bool(self._wire if self._entries is None else self._entries)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OrderLog) and self.to_wire() == other.to_wire()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"OrderLog({self.to_wire()!r})"

    def to_wire(self) -> list[Any]:
        if self._entries is None:
            assert self._wire is not None
            return self._wire
        return [[e.at, e.key, e.amount, e.currency] for e in self._entries]


class OrderDays:
    """The distinct UTC days with an order (docs/prediction.md "State"): a bitmap of
    at most :data:`ORDER_DAYS_SPAN` days ending at the newest order day, bit 0 its
    oldest order day, and the count of order days that slid off its old end.

    A set union, so exact in any arrival order while the orders lie within
    ORDER_DAYS_SPAN days of the newest; a late order dated before the covered range
    is taken to fall on a day already counted (once any has been).  Stored in the
    row under ``"od"`` as ``[start_day, base64 bitmap]`` (``[start_day, bitmap,
    count_before]`` once days slid off), omitted with no order; decoded only when
    read or changed, so a row whose customer does not order costs nothing more."""

    __slots__ = ("_before", "_bits", "_count", "_start", "_wire")

    def __init__(self, wire: list[Any] | None = None) -> None:
        self._wire = wire
        self._start = 0
        self._bits = -1 if wire is not None else 0  # -1: not decoded yet
        self._before = 0
        # The count, kept until the next order (-1: not counted yet): the churn_risk
        # step reads it on every due-time lookup (docs/performance.md "The core fast
        # paths").
        self._count = -1 if wire is not None else 0

    def _decode(self) -> None:
        wire = self._wire
        assert wire is not None
        self._start = wire[0]
        self._bits = int.from_bytes(base64.b64decode(wire[1]), "little")
        self._before = wire[2] if len(wire) > 2 else 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OrderDays) and self.to_wire() == other.to_wire()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"OrderDays({self.to_wire()!r})"

    @property
    def count(self) -> int:
        """The distinct order days."""
        count = self._count
        if count < 0:
            if self._bits < 0:
                self._decode()
            count = self._count = self._bits.bit_count() + self._before
        return count

    def add(self, t: int) -> None:
        """Take in an order at ``t`` (micros)."""
        if self._bits < 0:
            self._decode()
        day = t // MICROS_PER_DAY
        bits, start = self._bits, self._start
        self._wire = None
        self._count = -1
        if bits == 0:
            self._start, self._bits = day, 1
            return
        newest = start + bits.bit_length() - 1
        if day >= start:
            low = day - ORDER_DAYS_SPAN + 1
            if low > start:
                # Slide: the days falling off the old end are counted beside.
                k = low - start
                self._before += (bits & ((1 << k) - 1)).bit_count()
                bits >>= k
                start = low
            bits |= 1 << (day - start)
            # Bit 0 is the oldest day kept: one form for one set of days.
            shift = (bits & -bits).bit_length() - 1
            self._start, self._bits = start + shift, bits >> shift
        elif newest - day < ORDER_DAYS_SPAN:
            self._start, self._bits = day, (bits << (start - day)) | 1
        elif self._before == 0:
            self._before = 1  # older than the range and nothing counted yet: a new day

    def to_wire(self) -> list[Any] | None:
        wire = self._wire
        if wire is None and self._bits > 0:
            bits = self._bits
            text = base64.b64encode(bits.to_bytes((bits.bit_length() + 7) // 8, "little"))
            wire = [self._start, text.decode("ascii")]
            if self._before:
                wire.append(self._before)
            self._wire = wire
        return wire


class CountKey(NamedTuple):
    """A lifetime count's key: rule, step and the decision's outcome (or, for a
    conversion, its group).  Stored in the row as the string ``"rule/step/what"``."""

    rule: str
    step: int
    what: str

    def to_wire(self) -> str:
        return _count_key_wire(self)

    @staticmethod
    def parse(key: str) -> CountKey:
        return _parse_count_key(key)


# A row holds a few of the few dozen keys there are (rules x steps x outcomes) and is
# decoded and encoded on every slice that touches it: both directions are memoised
# (bounded: a hostile row cannot grow them past _MAX_MEMO).
_WIRE: dict[CountKey, str] = {}
_PARSED: dict[str, CountKey] = {}
_MAX_MEMO = 4096


def _count_key_wire(key: CountKey) -> str:
    wire = _WIRE.get(key)
    if wire is None:
        wire = f"{key.rule}/{key.step}/{key.what}"
        if len(_WIRE) < _MAX_MEMO:
            _WIRE[key] = wire
    return wire


def _parse_count_key(wire: str) -> CountKey:
    key = _PARSED.get(wire)
    if key is None:
        rule, step, what = wire.split("/")
        key = CountKey(rule, int(step), what)
        if len(_PARSED) < _MAX_MEMO:
            _PARSED[wire] = key
    return key


@dataclass(slots=True)
class LadderProgress:
    """The last step fired for the anchor it was fired against; ``pin``: the rules
    version (set id) the ladder finishes under (docs/rules.md "Changing rules").
    Stored in the row as ``[anchor, step]``, ``[anchor, step, pin]`` when pinned."""

    anchor: int
    step: int
    pin: str | None = None

    def to_wire(self) -> list[Any]:
        if self.pin is None:
            return [self.anchor, self.step]
        return [self.anchor, self.step, self.pin]

    @staticmethod
    def from_wire(v: list[Any]) -> LadderProgress:
        return LadderProgress(v[0], v[1], v[2] if len(v) > 2 else None)


@dataclass(slots=True)
class CustomerState:
    customer_id: str
    partition: int | None = None
    version: int = 0
    # --- facts -------------------------------------------------------------------
    orders: int = 0
    first_order_at: int | None = None
    second_order_at: int | None = None
    last_order_at: int | None = None
    order_times: list[int] = field(default_factory=list)  # ascending, newest MAX_ORDER_TIMES
    spend: dict[str, str] = field(default_factory=dict)  # currency -> exact decimal string
    # The distinct UTC days with an order (row key "od"): the churn_risk rule and
    # the scores read x = order_days - 1 (docs/prediction.md "State").
    order_day_set: OrderDays = field(default_factory=OrderDays)
    order_currencies: dict[str, int] = field(default_factory=dict)  # currency -> orders
    # Union of [t, t + active_window) over order times t, merged: "active at B" for
    # the retention rate is "B falls in a span" (an order within the trailing window).
    active_spans: list[list[int]] = field(default_factory=list)
    last_session_at: int | None = None
    last_activity_at: int | None = None
    first_seen_at: int | None = None
    consent_status: str | None = None
    consent_at: int | None = None
    # --- bookkeeping ---------------------------------------------------------------
    # Dedup memory (agents.core.dedup): newest event ids, every order id.
    event_ids: RecentIds = field(default_factory=RecentIds)
    order_ids: OrderFilter = field(default_factory=OrderFilter)
    # Events dated after the clock, by (time, event_id), in the compact form of
    # pending_entry: only what the engine needs (docs/budget.md "Byte budget").  The
    # earliest are kept in the row (the head); later ones beyond its share wait in
    # overflow rows of the same table (agents.core.pending).
    queue: PendingQueue = field(default_factory=PendingQueue)
    ladders: dict[str, LadderProgress] = field(default_factory=dict)
    stage: str = STAGE_PROSPECT
    # Firings still relevant to a guardrail or an attribution, oldest first.
    recent_firings: list[RecentFiring] = field(default_factory=list)
    # Lifetime counts for the reports: by (rule, step, outcome) and (rule, step, group).
    decision_counts: dict[CountKey, int] = field(default_factory=dict)
    conversion_counts: dict[CountKey, int] = field(default_factory=dict)
    # Lifetime counts of firings with a send window, for the reports: per rule
    # [deferred, delivered at local hour 0..23] (agents.core.send_counts); row key
    # "sc", omitted when empty.
    send_counts: dict[str, list[int]] = field(default_factory=dict)
    # The applied time of the last rules switch this customer went through (None:
    # still under the seed); row key "rv", omitted when None (docs/rules.md
    # "Changing rules").
    rules_at: int | None = None
    # The customer's zone in force: the valid ``timezone`` of the newest event taken
    # in (ties: the smallest name) and that event's time; the newest ignored name
    # likewise, for the lookup.  Row keys "tz" and "tzx", each ``[name, time]`` and
    # omitted when None (docs/send-windows.md "The customer's zone").
    zone: str | None = None
    zone_at: int | None = None
    zone_ignored: str | None = None
    zone_ignored_at: int | None = None
    # Firings waiting for their send time, at most one per rule, by send time
    # (docs/send-windows.md "Deferred firings"); row key "df", omitted when empty.
    deferred: list[DeferredFiring] = field(default_factory=list)
    # --- the lifecycle (docs/lifecycle.md "Facts") ---------------------------------
    # The earliest signup and session (the welcome rule's anchor): row keys "su", "fs".
    signup_at: int | None = None
    first_session_at: int | None = None
    # Views (not activity): the first and newest view time and the newest MAX_VIEWS
    # distinct products as [time, product_id], newest first; row key "vw".
    first_view_at: int | None = None
    last_view_at: int | None = None
    views: list[list[Any]] = field(default_factory=list)
    # The MAX_CARTS carts with the newest snapshots (row key "ct") and the funnel's
    # first cart with items and first checkout (row key "fc").
    carts: list[CartEntry] = field(default_factory=list)
    first_cart_at: int | None = None
    first_checkout_at: int | None = None
    # The orders kept for cancellations, by time (row key "ol"), cancellations of
    # orders not seen yet (row key "cx": [key, at, scope, amount, currency]) and the
    # counts the reports read (row key "cn"): full cancellations, partial ones, the
    # pending ones dropped, and the amounts refunded per currency.
    order_log_set: OrderLog = field(default_factory=lambda: OrderLog())
    pending_cancels: list[list[Any]] = field(default_factory=list)
    cancelled_orders: int = 0
    partial_cancels: int = 0
    cancels_dropped: int = 0
    refunded: dict[str, str] = field(default_factory=dict)
    # The keys of the newest MAX_PENDING_CANCELS orders cancelled in full, so a
    # second cancellation of one changes nothing (row key "cn").
    cancelled_keys: list[str] = field(default_factory=list)
    # --- recovered revenue (docs/reports.md "Recovered revenue") --------------------
    # The converting orders' amounts as placed, per abandonment rule (anchor last_view
    # or cart), group and currency, exact decimal strings; currencies bounded per
    # (rule, group) as the spend's.  Row key "rr", omitted when empty.
    recovered: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)

    # --- facts -------------------------------------------------------------------

    @property
    def opted_out(self) -> bool:
        return self.consent_status == CONSENT_OPTED_OUT

    @property
    def order_log(self) -> list[OrderEntry]:
        """The orders kept for cancellations, by time (docs/lifecycle.md "Facts")."""
        return self.order_log_set.entries

    @order_log.setter
    def order_log(self, entries: list[OrderEntry]) -> None:
        self.order_log_set = OrderLog()
        self.order_log_set.entries.extend(entries)

    @property
    def order_days(self) -> int:
        """Distinct UTC days with an order (docs/prediction.md "State")."""
        return self.order_day_set.count

    def apply(self, event: Event, active_window: int | None = None) -> None:
        """Fold one (already deduplicated) event into the facts.

        ``active_window`` (micros) also records the order in ``active_spans``.
        """
        t = event.occurred_at
        self.first_seen_at = t if self.first_seen_at is None else min(self.first_seen_at, t)
        if event.timezone is not None:
            self._take_zone(event.timezone, t)
        if event.timezone_ignored is not None:
            self._take_ignored_zone(event.timezone_ignored, t)
        kind = event.kind
        # Views first: the highest-volume input, and they touch only "vw".
        if kind == KIND_VIEW:
            self._apply_view(t, event.product_id or "")
        elif kind == KIND_PURCHASE:
            self._apply_order(
                t,
                event.amount or "0",
                event.currency or "XXX",
                event.order_id or "",
                event.cart_id,
                event.items,
            )
            if active_window is not None:
                self._add_span(t, t + active_window)
        elif kind == KIND_SESSION:
            self.last_session_at = _max(self.last_session_at, t)
            if self.first_session_at is None or t < self.first_session_at:
                self.first_session_at = t
            self._touch(t)
        elif kind == KIND_CONSENT:
            # Latest by event time wins; at equal times opt-out wins, so the result
            # does not depend on which of the two arrived first.
            key = (t, event.status == CONSENT_OPTED_OUT)
            if self.consent_at is None or key > (self.consent_at, self.opted_out):
                self.consent_at = t
                self.consent_status = event.status
        elif kind == KIND_CART:
            self._apply_cart(t, event.cart_id or "", event.action or CART_UPDATED, event.items)
        elif kind == KIND_CANCEL:
            self._apply_cancel(
                t,
                order_key(event.order_id or ""),
                event.action or CANCEL_FULL,
                event.amount or "0",
                event.currency or OTHER_CURRENCY,
                event.order_id,
            )
        # Not activity: the welcome ladder's anchor (docs/lifecycle.md "Facts").
        elif kind == KIND_SIGNUP and (self.signup_at is None or t < self.signup_at):
            self.signup_at = t

    def _take_zone(self, name: str, t: int) -> None:
        # Newest by event time, the smallest name at equal times: the same zone
        # whatever the arrival order (docs/send-windows.md "The customer's zone").
        if self.zone is None or self.zone_at is None or _newer(t, name, self.zone_at, self.zone):
            self.zone, self.zone_at = name, t

    def _take_ignored_zone(self, name: str, t: int) -> None:
        at, known = self.zone_ignored_at, self.zone_ignored
        if known is None or at is None or _newer(t, name, at, known):
            self.zone_ignored, self.zone_ignored_at = name, t

    # --- views and carts (docs/lifecycle.md "Facts") ---------------------------------

    def _apply_view(self, t: int, product: str) -> None:
        """The first and newest view and the newest MAX_VIEWS distinct products.

        Not activity.  The kept products are those with the newest views (each at
        its newest, ties: the smaller product id): a product pushed out had
        MAX_VIEWS newer ones, which only get newer, so a later-arriving older view
        of it is never taken back in - the same list in any arrival order."""
        if self.first_view_at is None or t < self.first_view_at:
            self.first_view_at = t
        if self.last_view_at is None or t > self.last_view_at:
            self.last_view_at = t
        views = self.views
        for i, (seen_at, seen) in enumerate(views):
            if seen == product:
                if t <= seen_at:
                    return
                del views[i]
                break
        i = 0
        for seen_at, seen in views:
            if t > seen_at or (t == seen_at and product < seen):
                break
            i += 1
        if i < MAX_VIEWS:
            views.insert(i, [t, product])
            del views[MAX_VIEWS:]

    def _apply_cart(
        self, t: int, cart_id: str, action: str, items: tuple[Item, ...] | None
    ) -> None:
        """A cart snapshot: the cart's newest by event time wins (equal times: the
        larger by :func:`_snapshot_rank`), the MAX_CARTS carts with the newest
        snapshots are kept (ties: the smaller cart id) - the same in any arrival
        order, as for views."""
        items = items or ()
        if not items:
            action = CART_EMPTIED  # an open cart without items is an emptied one
        elif action != CART_EMPTIED:
            if self.first_cart_at is None or t < self.first_cart_at:
                self.first_cart_at = t
            if action == CART_CHECKOUT and (
                self.first_checkout_at is None or t < self.first_checkout_at
            ):
                self.first_checkout_at = t
        carts = self.carts
        for cart in carts:
            if cart.cart_id == cart_id:
                if t < cart.at or (
                    t == cart.at
                    and _snapshot_rank(action, items) <= _snapshot_rank(cart.action, cart.items)
                ):
                    return
                cart.at, cart.action, cart.items = t, action, items
                # The newest order of this cart at or after the new snapshot stays
                # one; what matched the old snapshot's products need not.
                if cart.ordered_at is not None and cart.ordered_at < t:
                    cart.ordered_at = None
                cart.matched_at = None
                carts.sort(key=_cart_order)
                return
        if len(carts) >= MAX_CARTS:
            last = carts[-1]
            if t < last.at or (t == last.at and cart_id > last.cart_id):
                return  # older than every kept cart: forgotten
        carts.append(CartEntry(cart_id, t, action, items))
        carts.sort(key=_cart_order)
        del carts[MAX_CARTS:]

    def _order_in_carts(self, t: int, cart_id: str | None, items: tuple[Item, ...] | None) -> None:
        """An order at ``t`` ends what it ends of the kept carts' snapshots at or
        before it: its own cart (``ordered_at``) and any sharing a product
        (``matched_at``).  A cart not kept changes nothing.  Products compare by
        :func:`product_key`: an order back from ``pending`` keeps only those."""
        products = _product_keys(items) if items else None
        for cart in self.carts:
            if t < cart.at:
                continue
            if cart_id is not None and cart.cart_id == cart_id:
                cart.ordered_at = _max(cart.ordered_at, t)
            if products and any(product_key(item.product_id) in products for item in cart.items):
                cart.matched_at = _max(cart.matched_at, t)

    # --- orders and cancellations (docs/lifecycle.md "Cancellations") -----------------

    def _apply_order(
        self,
        t: int,
        amount: str,
        currency: str,
        order_id: str = "",
        cart_id: str | None = None,
        items: tuple[Item, ...] | None = None,
    ) -> None:
        self.orders += 1
        first, second = self.first_order_at, self.second_order_at
        if first is None or t < first:
            self.first_order_at, self.second_order_at = t, first
        elif second is None or t < second:
            self.second_order_at = t
        self.last_order_at = _max(self.last_order_at, t)
        self.order_day_set.add(t)
        bisect.insort(self.order_times, t)
        if len(self.order_times) > MAX_ORDER_TIMES:
            del self.order_times[0]
        # Wide precision: sums of any amounts validation accepts stay exact, so the
        # total does not depend on the order they were added in.
        self._add_spend(self._currency_slot(currency), amount, 1)
        self._touch(t)
        if self.stage == STAGE_PROSPECT:
            self.stage = STAGE_NEW
        if self.stage == STAGE_NEW and self.orders >= 2:
            self.stage = STAGE_REPEAT
        key = order_key(order_id)
        self._log_order(OrderEntry(t, key, amount, currency))
        if self.carts:
            self._order_in_carts(t, cart_id, items)
        if self.pending_cancels:
            # Cancellations that came before their order apply now, at once.
            waiting = [c for c in self.pending_cancels if c[0] == key]
            if waiting:
                self.pending_cancels = [c for c in self.pending_cancels if c[0] != key]
                for _, at, scope, cancelled, cur in waiting:
                    self._apply_cancel(at, key, scope, cancelled, cur)

    def _log_order(self, entry: OrderEntry) -> None:
        """Enter an order; an entry neither among the first ORDER_LOG_FIRST nor the
        newest ORDER_LOG_NEWEST is dropped (it never would be again: the set only
        grows on both sides).  By time, then key: one order for one set of orders."""
        log = self.order_log
        bisect.insort(log, entry, key=_log_order)
        if len(log) > ORDER_LOG_FIRST + ORDER_LOG_NEWEST:
            del log[ORDER_LOG_FIRST : len(log) - ORDER_LOG_NEWEST]

    def _apply_cancel(
        self,
        t: int,
        key: str,
        scope: str,
        amount: str,
        currency: str,
        order_id: str | None = None,
    ) -> None:
        """A cancellation at its own time ``t`` (docs/lifecycle.md "Cancellations")."""
        full = scope == CANCEL_FULL
        log = self.order_log
        i = next((j for j, entry in enumerate(log) if entry.key == key), -1)
        if i < 0 and (
            order_id is not None
            and (order_id not in self.order_ids or self._order_is_waiting(order_id))
        ):
            # Its order is not taken in yet: wait for it (the oldest dropped).
            waiting = self.pending_cancels
            bisect.insort(waiting, [key, t, scope, amount, currency], key=_cancel_order)
            if len(waiting) > MAX_PENDING_CANCELS:
                del waiting[0]
                self.cancels_dropped += 1
            return
        if i < 0 and (self.orders <= len(log) or key in self.cancelled_keys):
            return  # cancelled in full already: nothing left to cancel
        self._add_refund(currency, amount)
        if not full:
            self.partial_cancels += 1
            self._sub_spend(currency, amount)
            if i >= 0:
                entry = log[i]
                if entry.currency == currency:
                    entry.amount = _minus(entry.amount, amount)
            return
        self.cancelled_orders += 1
        self.cancelled_keys.append(key)
        del self.cancelled_keys[:-MAX_PENDING_CANCELS]
        self.orders = max(self.orders - 1, 0)
        if i < 0:
            # An order counted but not in the log (a middle one of a customer with
            # more than 35): counts and spend only - the one approximation.
            self._sub_spend(currency, amount)
            self._count_off(self._spend_slot(currency))
        else:
            entry = log.pop(i)
            self._sub_spend(entry.currency, entry.amount)
            self._count_off(self._spend_slot(entry.currency))
            self._reread(entry, i)
        if self.orders == 0:
            self.stage = STAGE_PROSPECT
        elif self.orders == 1 and self.stage == STAGE_REPEAT:
            self.stage = STAGE_NEW

    def _order_is_waiting(self, order_id: str) -> bool:
        """Whether the order is taken in but dated after the clock (still pending in
        the row; overflow rows are not read for this)."""
        return any(p.get("o") == order_id and p.get("k") == KIND_PURCHASE for p in self.queue.head)

    def _reread(self, removed: OrderEntry, i: int) -> None:
        """First, second and last order and the order times after the log lost
        ``removed`` (it was at index ``i``)."""
        log = self.order_log
        if self.orders == len(log):
            # The log holds every order: read everything from it.
            self.first_order_at = log[0].at if log else None
            self.second_order_at = log[1].at if len(log) > 1 else None
            self.last_order_at = log[-1].at if log else None
            self.order_times = [e.at for e in log[-MAX_ORDER_TIMES:]]
            return
        # Orders the log does not hold (more than 35, or a row from before the log):
        # what it does hold is still exact.
        if i < 2 and removed.at in (self.first_order_at, self.second_order_at) and len(log) > 1:
            self.first_order_at, self.second_order_at = log[0].at, log[1].at
        if i == len(log) and log:
            self.last_order_at = log[-1].at
        if removed.at in self.order_times:
            self.order_times.remove(removed.at)

    def _spend_slot(self, currency: str) -> str:
        """Where spend of ``currency`` is (without moving any)."""
        return currency if currency in self.spend else OTHER_CURRENCY

    def _sub_spend(self, currency: str, amount: str) -> None:
        slot = self._spend_slot(currency)
        if slot in self.spend:
            self.spend[slot] = _minus(self.spend[slot], amount)

    def _count_off(self, slot: str) -> None:
        n = self.order_currencies.get(slot, 0) - 1
        if n > 0:
            self.order_currencies[slot] = n
        else:
            self.order_currencies.pop(slot, None)

    def _add_refund(self, currency: str, amount: str) -> None:
        # Bounded like spend: a currency without its own spend slot goes to XXX.
        slot = self._spend_slot(currency)
        with localcontext(prec=80):
            total = Decimal(self.refunded.get(slot, "0")) + Decimal(amount)
        self.refunded[slot] = format(total, "f")

    def order_at(self, k: int) -> int | None:
        """The k-th order's time (1-based, net of cancellations) when the log holds
        it: every order while it holds them all, else the first ORDER_LOG_FIRST and
        the newest (None otherwise, and for fewer than k orders)."""
        log, n = self.order_log, self.orders
        if k < 1 or k > n:
            return None
        if n == len(log):
            return log[k - 1].at
        if k <= ORDER_LOG_FIRST:
            # The log's head, while it starts at the first order (a row from before
            # the log does not).
            return log[k - 1].at if log and log[0].at == self.first_order_at else None
        back = n - k  # orders after the k-th
        return log[-1 - back].at if back < len(log) - ORDER_LOG_FIRST else None

    def _currency_slot(self, currency: str) -> str:
        """Where an order's spend goes: its own currency while it is among the
        MAX_CURRENCIES alphabetically smallest seen, else OTHER_CURRENCY.

        The named set is always the smallest codes seen, whatever the arrival
        order, so the totals do not depend on it."""
        if currency == OTHER_CURRENCY or currency in self.spend:
            return currency
        named = [c for c in self.spend if c != OTHER_CURRENCY]
        if len(named) < MAX_CURRENCIES:
            return currency
        largest = max(named)
        if currency > largest:
            return OTHER_CURRENCY
        moved, orders = self.spend.pop(largest), self.order_currencies.pop(largest, 0)
        self._add_spend(OTHER_CURRENCY, moved, orders)
        return currency

    def _add_spend(self, currency: str, amount: str, orders: int) -> None:
        # Wide precision: sums of any amounts validation accepts stay exact, so the
        # total does not depend on the order they were added in.
        with localcontext(prec=80):
            total = Decimal(self.spend.get(currency, "0")) + Decimal(amount)
        self.spend[currency] = format(total, "f")
        self.order_currencies[currency] = self.order_currencies.get(currency, 0) + orders

    def add_recovered(self, rule: str, group: str, currency: str, amount: str) -> None:
        """Add a converting order's amount to ``rule``'s recovered revenue of
        ``group`` (docs/reports.md "Recovered revenue"): the alphabetically smallest
        MAX_RECOVERED_CURRENCIES codes keep their own sums, the others go to
        OTHER_CURRENCY, as the spend's, so the totals do not depend on the order they
        came in (the row's bound, docs/budget.md "Lifecycle")."""
        into = self.recovered.setdefault(rule, {}).setdefault(group, {})
        if currency != OTHER_CURRENCY and currency not in into:
            named = [c for c in into if c != OTHER_CURRENCY]
            if len(named) >= MAX_RECOVERED_CURRENCIES:
                largest = max(named)
                if currency > largest:
                    currency = OTHER_CURRENCY
                else:
                    _add_decimal(into, OTHER_CURRENCY, into.pop(largest))
        _add_decimal(into, currency, amount)

    def _add_span(self, start: int, end: int) -> None:
        # Union of intervals: commutative, so arrival order does not matter.
        merged: list[list[int]] = []
        for s0, e0 in self.active_spans:
            if e0 < start or s0 > end:
                merged.append([s0, e0])
            else:
                start, end = min(start, s0), max(end, e0)
        merged.append([start, end])
        merged.sort()
        self.active_spans = merged[-MAX_ACTIVE_SPANS:]

    def _touch(self, t: int) -> None:
        """Activity: restarts the inactivity ladder, and lifts at-risk/lapsed stages."""
        if self.last_activity_at is not None and t <= self.last_activity_at:
            return
        self.last_activity_at = t
        if self.stage == STAGE_LAPSED:
            self.stage = STAGE_REACTIVATED
        elif self.stage == STAGE_AT_RISK:
            self.stage = STAGE_REPEAT if self.orders >= 2 else STAGE_NEW

    # --- dedup ---------------------------------------------------------------------

    def seen(self, event: Event) -> bool:
        """True if this event (or, for a purchase, its order) was already taken in.

        Event ids: the newest ``max_recent_event_ids``; order ids: the customer's
        whole history (agents.core.dedup, with its false-positive rate)."""
        if event.event_id in self.event_ids:
            return True
        return (
            event.kind == KIND_PURCHASE
            and event.order_id is not None
            and event.order_id in self.order_ids
        )

    def remember(self, event: Event, max_event_ids: int) -> None:
        """Take the event's ids into the dedup memory (the newest ``max_event_ids``
        event ids; order ids for the whole history: agents.core.dedup)."""
        self.event_ids.add(event.event_id, max_event_ids)
        if event.kind == KIND_PURCHASE and event.order_id is not None:
            self.order_ids.add(event.order_id)

    # --- pending -------------------------------------------------------------------

    @property
    def pending(self) -> list[dict[str, Any]]:
        """The waiting entries kept in the row (the queue's head)."""
        return self.queue.head

    @property
    def spill(self) -> Spill:
        """The waiting entries in overflow rows."""
        return self.queue.spill

    def pending_bytes(self) -> int:
        return self.queue.head_bytes()

    def pending_count(self) -> int:
        """Events waiting for the clock, in the row and in overflow rows."""
        return self.queue.count()

    def pending_total_bytes(self) -> int:
        """Bytes of every waiting entry (as the hostile-input cap counts them)."""
        return self.queue.total_bytes()

    def push_pending(self, entry: dict[str, Any], limits: PendingLimits | None = None) -> None:
        """Wait for the clock (agents.core.pending.PendingQueue.push)."""
        self.queue.push(entry, limits)

    def pop_pending(self, limits: PendingLimits | None = None) -> Event:
        """The earliest waiting event, taken off the queue."""
        return pending_event(self.customer_id, self.queue.pop(limits))

    # --- snapshots -----------------------------------------------------------------

    def facts(self) -> dict[str, Any]:
        """The order-independent part (what the permutation property compares)."""
        out: dict[str, Any] = {
            "orders": self.orders,
            "first_order_at": self.first_order_at,
            "second_order_at": self.second_order_at,
            "last_order_at": self.last_order_at,
            "order_times": list(self.order_times),
            "spend": dict(sorted(self.spend.items())),
            "order_currencies": dict(sorted(self.order_currencies.items())),
            "active_spans": [list(x) for x in self.active_spans],
            "last_session_at": self.last_session_at,
            "last_activity_at": self.last_activity_at,
            "first_seen_at": self.first_seen_at,
            "consent_status": self.consent_status,
            "consent_at": self.consent_at,
        }
        order_days = self.order_day_set.to_wire()
        if order_days is not None:
            out["od"] = order_days
        # Only when there is one: a row without a zone reads exactly as before.
        if self.zone is not None:
            out["tz"] = [self.zone, self.zone_at]
        if self.zone_ignored is not None:
            out["tzx"] = [self.zone_ignored, self.zone_ignored_at]
        # The lifecycle's facts (docs/lifecycle.md "Facts"), each only when there is
        # one: a row without them reads exactly as before.
        if self.signup_at is not None:
            out["su"] = self.signup_at
        if self.first_session_at is not None:
            out["fs"] = self.first_session_at
        if self.first_view_at is not None:
            out["vw"] = [self.first_view_at, self.last_view_at, [list(v) for v in self.views]]
        if self.carts:
            out["ct"] = [cart.to_wire() for cart in self.carts]
        if self.first_cart_at is not None or self.first_checkout_at is not None:
            out["fc"] = [self.first_cart_at, self.first_checkout_at]
        if self.order_log_set:
            out["ol"] = self.order_log_set.to_wire()
        if self.pending_cancels:
            out["cx"] = [list(c) for c in self.pending_cancels]
        if self.cancelled_orders or self.partial_cancels or self.cancels_dropped or self.refunded:
            out["cn"] = [
                self.cancelled_orders,
                self.partial_cancels,
                self.cancels_dropped,
                dict(sorted(self.refunded.items())),
                list(self.cancelled_keys),
            ]
        return out

    def to_dict(self) -> dict[str, Any]:
        d = self.facts()
        d.update(
            customer_id=self.customer_id,
            partition=self.partition,
            version=self.version,
            event_ids=self.event_ids.to_wire(),
            order_ids=self.order_ids.to_wire(),
            pending=self.queue.head,
            ladders={k: v.to_wire() for k, v in self.ladders.items()},
            stage=self.stage,
            # Inline rather than RecentFiring.to_wire: this runs on every row written.
            recent_firings=[
                [f.due_at, f.rule, f.step, f.anchor_at, f.outcome, f.converted_at]
                if f.sent_at is None and f.key is None
                else f.to_wire()
                for f in self.recent_firings
            ],
            decision_counts=_wire_counts(self.decision_counts),
            conversion_counts=_wire_counts(self.conversion_counts),
        )
        if self.send_counts:
            d["sc"] = {rule: list(row) for rule, row in self.send_counts.items()}
        if self.queue.spill:
            d["spill"] = self.queue.spill.to_wire()
        if self.rules_at is not None:
            d["rv"] = self.rules_at
        if self.deferred:
            d["df"] = [f.to_wire() for f in self.deferred]
        if self.recovered:
            d["rr"] = {
                rule: {group: dict(sums) for group, sums in groups.items()}
                for rule, groups in self.recovered.items()
            }
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CustomerState:
        return cls(
            customer_id=d["customer_id"],
            partition=d.get("partition"),
            version=d.get("version", 0),
            orders=d.get("orders", 0),
            first_order_at=d.get("first_order_at"),
            second_order_at=d.get("second_order_at"),
            last_order_at=d.get("last_order_at"),
            order_times=list(d.get("order_times", [])),
            spend=dict(d.get("spend", {})),
            order_day_set=_order_days(d),
            order_currencies=dict(d.get("order_currencies", {})),
            active_spans=[list(x) for x in d.get("active_spans", [])],
            last_session_at=d.get("last_session_at"),
            last_activity_at=d.get("last_activity_at"),
            first_seen_at=d.get("first_seen_at"),
            consent_status=d.get("consent_status"),
            consent_at=d.get("consent_at"),
            event_ids=_event_ids(d),
            order_ids=_order_ids(d),
            queue=PendingQueue(
                [_loaded_entry(p) for p in d.get("pending", [])], Spill.from_wire(d.get("spill"))
            ),
            ladders={k: _progress(v) for k, v in d.get("ladders", {}).items()},
            stage=d.get("stage", STAGE_PROSPECT),
            recent_firings=[RecentFiring(*x) for x in d.get("recent_firings", [])],
            decision_counts=_counts(d.get("decision_counts", {})),
            conversion_counts=_counts(d.get("conversion_counts", {})),
            send_counts={rule: list(row) for rule, row in d.get("sc", {}).items()},
            rules_at=d.get("rv"),
            **_zones(d),
            deferred=[DeferredFiring.from_wire(x) for x in d.get("df", ())],
            **_lifecycle(d),
            recovered={
                rule: {group: dict(sums) for group, sums in groups.items()}
                for rule, groups in d.get("rr", {}).items()
            },
        )

    @classmethod
    def summary_from_dict(cls, d: dict[str, Any]) -> CustomerState:
        """Only what the read model's hash shows (orders, times, order days, ladders,
        stage, consent, version): :meth:`from_dict` without the dedup memory, pending
        events, firings and counts, which cost most of a row's decode.  Read the
        same fields the same way as :meth:`from_dict` (a unit test holds the two
        hashes equal on every row of a core run)."""
        return cls(
            customer_id=d["customer_id"],
            version=d.get("version", 0),
            orders=d.get("orders", 0),
            first_order_at=d.get("first_order_at"),
            second_order_at=d.get("second_order_at"),
            last_order_at=d.get("last_order_at"),
            order_times=d.get("order_times", []),
            order_day_set=_order_days(d),
            last_activity_at=d.get("last_activity_at"),
            consent_status=d.get("consent_status"),
            ladders={k: _progress(v) for k, v in d.get("ladders", {}).items()},
            stage=d.get("stage", STAGE_PROSPECT),
        )

    def recent_decisions(self) -> list[dict[str, Any]]:
        """The firings this record still remembers, oldest first, for lookups."""
        return [
            {
                "trigger_id": trigger_id(self.customer_id, f.rule, f.step, f.anchor_at, f.key),
                "rule": f.rule,
                "step": f.step,
                "due_at": iso(f.due_at),
                "outcome": f.outcome,
                "converted_at": iso(f.converted_at) if f.converted_at is not None else None,
            }
            for f in self.recent_firings
        ]


def _add_decimal(into: dict[str, str], currency: str, amount: str) -> None:
    # Wide precision, as the spend's: exact whatever the order of the adds.
    with localcontext(prec=80):
        total = Decimal(into.get(currency, "0")) + Decimal(amount)
    into[currency] = format(total, "f")


def _order_days(d: dict[str, Any]) -> OrderDays:
    """The row's order days; for a row written before they were kept (no ``"od"``
    but orders), rebuilt from the order times it kept: the newest MAX_ORDER_TIMES,
    the first and the second (docs/prediction.md "State")."""
    wire = d.get("od")
    if wire is not None or not d.get("orders"):
        return OrderDays(wire)
    out = OrderDays()
    for t in {*d.get("order_times", ()), d.get("first_order_at"), d.get("second_order_at")}:
        if t is not None:
            out.add(t)
    return out


def _lifecycle(d: dict[str, Any]) -> dict[str, Any]:
    """The lifecycle fields of a row (none in a row from before them)."""
    out: dict[str, Any] = {}
    if (su := d.get("su")) is not None:
        out["signup_at"] = su
    if (fs := d.get("fs")) is not None:
        out["first_session_at"] = fs
    if (vw := d.get("vw")) is not None:
        out["first_view_at"], out["last_view_at"] = vw[0], vw[1]
        out["views"] = [list(v) for v in vw[2]]
    if (ct := d.get("ct")) is not None:
        out["carts"] = [CartEntry.from_wire(c) for c in ct]
    if (fc := d.get("fc")) is not None:
        out["first_cart_at"], out["first_checkout_at"] = fc
    if (ol := d.get("ol")) is not None:
        out["order_log_set"] = OrderLog(ol)
    if (cx := d.get("cx")) is not None:
        out["pending_cancels"] = [list(c) for c in cx]
    if (cn := d.get("cn")) is not None:
        out["cancelled_orders"], out["partial_cancels"], out["cancels_dropped"] = cn[:3]
        out["refunded"] = dict(cn[3])
        out["cancelled_keys"] = list(cn[4]) if len(cn) > 4 else []
    return out


def _zones(d: dict[str, Any]) -> dict[str, Any]:
    """The zone fields of a row (none in a row without a zone)."""
    out: dict[str, Any] = {}
    if (tz := d.get("tz")) is not None:
        out["zone"], out["zone_at"] = tz
    if (tzx := d.get("tzx")) is not None:
        out["zone_ignored"], out["zone_ignored_at"] = tzx
    return out


def _newer(t: int, name: str, at: int, known: str) -> bool:
    """Whether (t, name) replaces (at, known): a later time, or the same time and a
    smaller name."""
    return t > at or (t == at and name < known)


def order_key(order_id: str) -> str:
    """An order's key in the order log: the first 16 hex digits of the sha256 of its
    id (docs/lifecycle.md "Cancellations")."""
    return hashlib.sha256(order_id.encode()).hexdigest()[:16]


# A cart snapshot's action at equal times: emptied wins, then checkout_started.
_ACTION_RANK = {CART_UPDATED: 0, CART_CHECKOUT: 1, CART_EMPTIED: 2}


def _snapshot_rank(action: str, items: tuple[Item, ...]) -> tuple[int, bytes]:
    """Which of two snapshots of one cart at one instant wins (the larger): the
    action, then the items' JSON text - any fixed total order does."""
    return _ACTION_RANK.get(action, 0), orjson.dumps([item.to_wire() for item in items])


def _cart_order(cart: CartEntry) -> tuple[int, str]:
    return -cart.at, cart.cart_id


def _log_order(entry: OrderEntry) -> tuple[int, str]:
    return entry.at, entry.key


def _cancel_order(entry: list[Any]) -> tuple[int, str]:
    return entry[1], entry[0]


def _minus(total: str, amount: str) -> str:
    """``total`` - ``amount``, exact, never below 0."""
    with localcontext(prec=80):
        left = Decimal(total) - Decimal(amount)
    return format(left, "f") if left > 0 else "0"


def _progress(v: list[Any]) -> LadderProgress:
    # Two elements for every unpinned ladder (rows written before pins read back
    # unchanged): the common case without a length check's branch cost.
    if len(v) == 2:
        return LadderProgress(v[0], v[1])
    return LadderProgress(v[0], v[1], v[2])


def _max(a: int | None, b: int) -> int:
    return b if a is None or b > a else a


# What a pending event keeps, by kind: the engine needs the time, the event id
# (the tie-break of equal times) and what it folds in (the zone too, kept or
# ignored: docs/send-windows.md "The customer's zone"); never the channel, the
# session id or the customer id (the row's own).  The lifecycle's kinds
# (docs/lifecycle.md "Inputs"): a view its product (never its category or price),
# a cart its id, action and items, a cancellation its order, scope (``act``),
# amount and currency; an order also its cart id and, of its items, only what the
# ``any_product`` exit reads: ``ip``, the :func:`product_key` of each product id
# (50 escaped 128-character ids would make one entry 40 KB, and the overflow
# rows' index is sized by the widest entry: agents.core.budget MAX_ENTRY_BYTES).
_PENDING_KEYS = {
    KIND_PURCHASE: ("k", "e", "t", "o", "a", "cur", "tz", "tzx", "cart", "ip"),
    KIND_SESSION: ("k", "e", "t", "tz", "tzx"),
    KIND_CONSENT: ("k", "e", "t", "st", "tz", "tzx"),
    KIND_SIGNUP: ("k", "e", "t", "tz", "tzx"),
    KIND_VIEW: ("k", "e", "t", "p", "tz", "tzx"),
    KIND_CART: ("k", "e", "t", "cart", "act", "it", "tz", "tzx"),
    KIND_CANCEL: ("k", "e", "t", "o", "act", "a", "cur", "tz", "tzx"),
}
# An order's items read back from ``ip``: each product's key in ``product_id``,
# with quantity 0 and price "0" (outside the contract, never taken for a real
# line); :func:`order_product_keys` reads both forms.
PENDING_ITEM_QUANTITY = 0


def product_key(product_id: str) -> str:
    """A product id as a waiting order keeps it: the first 16 hex digits of its
    sha256 (as an order's key in ``order_log``)."""
    return hashlib.sha256(product_id.encode()).hexdigest()[:16]


def order_product_keys(event: Event) -> frozenset[str]:
    """The :func:`product_key` of every product of an order, whether the event came
    straight from the input or back from ``pending`` (docs/lifecycle.md "Inputs")."""
    return _product_keys(event.items)


def _product_keys(items: tuple[Item, ...] | None) -> frozenset[str]:
    return frozenset(
        item.product_id if item.quantity == PENDING_ITEM_QUANTITY else product_key(item.product_id)
        for item in items or ()
    )


def pending_entry(event: Event) -> dict[str, Any]:
    """The compact form of an event waiting in ``pending``."""
    return _compact(event.to_wire())


def pending_event(customer_id: str, entry: dict[str, Any]) -> Event:
    if "ip" in entry:
        currency = entry.get("cur", "XXX")
        lines = [[p, PENDING_ITEM_QUANTITY, "0", currency] for p in entry["ip"]]
        return Event.from_wire({**entry, "c": customer_id, "it": lines})
    return Event.from_wire({**entry, "c": customer_id})


def _compact(wire: dict[str, Any]) -> dict[str, Any]:
    keys = _PENDING_KEYS.get(wire["k"], ("k", "e", "t"))
    if "it" in wire and wire["k"] == KIND_PURCHASE:
        wire = {**wire, "ip": [product_key(line[0]) for line in wire["it"]]}
    return {k: wire[k] for k in keys if k in wire}


# The key sequences _compact produces, by kind (every ordered subset of the kind's
# keys): an entry read back from a row in one of them is already compact.  A row
# holds up to hundreds of pending entries and is decoded on every slice that
# touches its customer.
_COMPACT_SHAPES: dict[str, frozenset[tuple[str, ...]]] = {
    kind: frozenset(
        tuple(k for i, k in enumerate(keys) if mask >> i & 1) for mask in range(1 << len(keys))
    )
    for kind, keys in _PENDING_KEYS.items()
}


def _loaded_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """A pending entry of a row being decoded: the parsed dict itself (owned by
    nobody else) when already compact, else :func:`_compact` of it."""
    shapes = _COMPACT_SHAPES.get(entry["k"])
    if shapes is not None and tuple(entry) in shapes:
        return entry
    return _compact(entry)


def _counts(stored: dict[str, int]) -> dict[CountKey, int]:
    memo = _PARSED  # the memo looked up inline: this runs for every row loaded
    return {(memo.get(k) or _parse_count_key(k)): n for k, n in stored.items()}


def _wire_counts(counts: dict[CountKey, int]) -> dict[str, int]:
    memo = _WIRE
    return {(memo.get(k) or _count_key_wire(k)): n for k, n in counts.items()}


def _event_ids(d: dict[str, Any]) -> RecentIds:
    if "event_ids" in d:
        return RecentIds(d["event_ids"])
    return RecentIds.of(list(d.get("recent_event_ids", [])))  # a row from before hashes


def _order_ids(d: dict[str, Any]) -> OrderFilter:
    if "order_ids" in d:
        return OrderFilter(d["order_ids"])
    out = OrderFilter()  # a row from before the lifetime filter: its newest 256 orders
    for order_id in d.get("recent_order_ids", []):
        out.add(order_id)
    return out
