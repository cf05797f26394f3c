"""The sample's lifecycle events (``SampleOptions.lifecycle``): sign-ups, product views,
carts, checkouts, abandonment and cancellations around the orders and sessions of
:mod:`streams.feed.sample` (docs/lifecycle.md "Sample and demo").

Everything here is drawn from a random stream of its own (``lifecycle-<seed>``), so
the orders, sessions and consents of a lifecycle sample are those of the sample
without it, draw for draw: an order with a cart differs from its line without only
in ``schema`` (``purchase/2``), ``cart_id`` and ``items``.  The rates below are per
customer, per order or per cart, and docs/lifecycle.md states them.
"""

from __future__ import annotations

import random
from typing import Any, Protocol

import orjson

from schemas.records import (
    CANCEL_FULL,
    CANCEL_PARTIAL,
    CART_CHECKOUT,
    CART_EMPTIED,
    CART_UPDATED,
    SCHEMA_CART,
    SCHEMA_ORDER_CANCELLED,
    SCHEMA_PRODUCT_VIEW,
    SCHEMA_PURCHASE_2,
    SCHEMA_SIGNUP,
)
from streams.feed.sample_options import arrival_key, later_key

MILLI = 1000
MINUTE = 60_000_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR

# --- the rates (docs/lifecycle.md "Sample and demo") --------------------------------
# Every customer signs up, at or before their first event, up to this long before it.
SIGNUP_LEAD = 2 * DAY
# Product views per order: uniform in this range (mean 10); most in the hour before
# the order, the rest in the days before it (earlier visits: browse abandonment).
VIEWS_PER_ORDER = (5, 15)
VIEWS_LAST_HOUR_SHARE = 0.7
VIEWS_EARLIER = 3 * DAY
# A view names one of the order's products with this probability, else any product.
VIEWS_OF_ORDERED = 0.4
# Browsing-only customers (prospects): views after each session, uniform in this range.
PROSPECT_VIEWS_PER_SESSION = (2, 6)
# Share of orders placed from a cart (as purchase/2 with its cart_id and items).
CART_ORDER_SHARE = 0.8
# Each carted order comes with a geometric number of abandoned carts (mean 1.5): with
# the carts that became orders, about 60 % of all carts are abandoned.
ABANDONED_CONTINUE = 0.6
# A prospect leaves one abandoned cart with this probability.
PROSPECT_CART_SHARE = 0.4
# Checkouts: about 40 % of all carts (55 % of the ordered ones, 30 % of the abandoned).
CHECKOUT_ORDERED = 0.55
CHECKOUT_ABANDONED = 0.3
# Emptied: about 5 % of all carts (8 % of the abandoned ones).
EMPTIED_ABANDONED = 0.08
# Cancellations per order: 3 % full, 2 % partial (10 % to 60 % of the amount); a
# tenth of them dated shortly before their order (another system's clock), the rest
# up to two weeks after it (never after the sample's end).
CANCEL_FULL_SHARE = 0.03
CANCEL_PARTIAL_SHARE = 0.02
CANCEL_BEFORE_SHARE = 0.1
CANCEL_AFTER = 14 * DAY
# Products: a catalogue of this many, a few popular ones viewed most.
CATALOGUE = 500
CATEGORIES = 24
VIEW_PRICE_SHARE = 0.5
CART_CURRENCIES = ("EUR",) * 8 + ("USD", "GBP")


def product(number: int) -> str:
    return f"prod-{number:05d}"


def catalogue_cents(number: int) -> int:
    """A product's list price in cents (views and abandoned carts)."""
    return 199 + (number * 7919) % 9800


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


class Sample(Protocol):
    """What the lifecycle events need of the sample's generator (streams/feed/sample.py)."""

    start: int
    end: int

    @property
    def opts(self) -> Any: ...

    def render(self, micros: int, offset_minutes: int, suffix: str) -> str: ...

    def _zoned(self, event: dict[str, Any], t: int) -> dict[str, Any]: ...

    def _push(self, key: int, line: bytes) -> None: ...


def _dumps(obj: dict[str, Any]) -> bytes:
    # An exact copy: orjson's result keeps its whole write buffer (streams/feed/sample.py).
    return bytes(memoryview(orjson.dumps(obj)))


class Lifecycle:
    """The lifecycle events of one sample run, pushed into its generator's entries."""

    def __init__(self, gen: Sample, seed: int) -> None:
        self.gen = gen
        self.rng = random.Random(f"lifecycle-{seed}")
        self.carts = 0
        # The customer being drawn: the earliest lifecycle event's time, the carted
        # orders (for the abandoned carts) and the newest order's currency.
        self.first_at: int | None = None
        self.carted_orders = 0
        self.currency = "EUR"

    # -- helpers ------------------------------------------------------------------

    def _time(self, lo: float, hi: float) -> int:
        gen = self.gen
        lo = max(lo, gen.start)
        hi = min(hi, gen.end)
        t = int(lo + self.rng.random() * (hi - lo)) if hi > lo else int(lo)
        return t - t % MILLI

    def _product(self) -> int:
        # Squaring a uniform draw makes the low numbers popular.
        return 1 + int(CATALOGUE * self.rng.random() ** 2)

    def _deliver(self, t: int, event: dict[str, Any], offset: int, suffix: str) -> None:
        """The event at its arrival key, with the sample's delivery noise (duplicates,
        late and shuffled events; no malformed ones: the old kinds make those)."""
        gen, rng, opts = self.gen, self.rng, self.gen.opts
        event["event_id"] = f"{rng.getrandbits(128):032x}"
        event["occurred_at"] = gen.render(t, offset, suffix)
        line = _dumps(gen._zoned(event, t))
        key = arrival_key(rng, opts, t)
        gen._push(key, line)
        if opts.duplicate_rate and rng.random() < opts.duplicate_rate:
            gen._push(later_key(rng, opts, t, key), line)
        self.first_at = t if self.first_at is None else min(self.first_at, t)

    def _event(self, schema: str, customer_id: str, **fields: Any) -> dict[str, Any]:
        # event_id and occurred_at are set by _deliver (keys first, as the old kinds).
        return {
            "schema": schema,
            "event_id": "",
            "customer_id": customer_id,
            "occurred_at": "",
            **fields,
        }

    # -- events -------------------------------------------------------------------

    def _view(self, customer_id: str, t: int, number: int, offset: int, suffix: str) -> None:
        fields: dict[str, Any] = {
            "product_id": product(number),
            "category": f"cat-{number % CATEGORIES:02d}",
        }
        if self.rng.random() < VIEW_PRICE_SHARE:
            fields["price"] = _money(catalogue_cents(number))
            fields["currency"] = "EUR"
        self._deliver(t, self._event(SCHEMA_PRODUCT_VIEW, customer_id, **fields), offset, suffix)

    def _snapshot(
        self,
        customer_id: str,
        cart_id: str,
        t: int,
        action: str,
        items: list[dict[str, Any]],
        offset: int,
        suffix: str,
    ) -> None:
        event = self._event(SCHEMA_CART, customer_id, cart_id=cart_id, action=action, items=items)
        self._deliver(t, event, offset, suffix)

    def _items(self, cents: int, currency: str) -> list[dict[str, Any]]:
        """1 to 3 distinct products whose quantities times unit prices add up to
        ``cents`` exactly (the order's amount)."""
        rng = self.rng
        n = min(cents, 1 + (rng.random() < 0.5) + (rng.random() < 0.25))
        cuts = sorted(rng.sample(range(1, cents), n - 1)) if n > 1 else []
        parts = [b - a for a, b in zip([0, *cuts], [*cuts, cents], strict=True)]
        numbers: list[int] = []
        while len(numbers) < n:
            number = self._product()
            if number not in numbers:
                numbers.append(number)
        items = []
        for number, part in zip(numbers, parts, strict=True):
            quantity = 2 if part % 2 == 0 and rng.random() < 0.25 else 1
            items.append(
                {
                    "product_id": product(number),
                    "quantity": quantity,
                    "unit_price": _money(part // quantity),
                    "currency": currency,
                }
            )
        return items

    def order(self, event: dict[str, Any], t: int, cents: int, offset: int, suffix: str) -> None:
        """Around one order (``event``, not yet delivered): its views, its cart (then
        ``event`` becomes purchase/2 with the cart's id and items) and a cancellation."""
        rng = self.rng
        customer_id = event["customer_id"]
        currency = event["currency"]
        self.currency = currency
        items: list[dict[str, Any]] | None = None
        if rng.random() < CART_ORDER_SHARE:
            items = self._items(cents, currency)
            self.carts += 1
            self.carted_orders += 1
            cart_id = f"cart-{self.carts:08d}"
            first = self._time(t - 2 * DAY, t - 30 * MINUTE)
            if len(items) > 1 and rng.random() < 0.5:
                # A first snapshot with part of the items, then the whole cart.
                part = items[: 1 + int(rng.random() * (len(items) - 1))]
                self._snapshot(customer_id, cart_id, first, CART_UPDATED, part, offset, suffix)
                first = self._time(first, t - 20 * MINUTE)
            self._snapshot(customer_id, cart_id, first, CART_UPDATED, items, offset, suffix)
            if rng.random() < CHECKOUT_ORDERED:
                at = self._time(max(first, t - 20 * MINUTE), t)
                self._snapshot(customer_id, cart_id, at, CART_CHECKOUT, items, offset, suffix)
            event["schema"] = SCHEMA_PURCHASE_2
            event["cart_id"] = cart_id
            event["items"] = items
        ordered = [int(i["product_id"][5:]) for i in items] if items else [self._product()]
        lo, hi = VIEWS_PER_ORDER
        for _ in range(lo + int(rng.random() * (hi - lo + 1))):
            if rng.random() < VIEWS_LAST_HOUR_SHARE:
                at = self._time(t - HOUR, t)
            else:
                at = self._time(t - VIEWS_EARLIER, t - HOUR)
            number = (
                ordered[int(rng.random() * len(ordered))]
                if rng.random() < VIEWS_OF_ORDERED
                else self._product()
            )
            self._view(customer_id, at, number, offset, suffix)
        u = rng.random()
        if u < CANCEL_FULL_SHARE + CANCEL_PARTIAL_SHARE:
            full = u < CANCEL_FULL_SHARE
            if rng.random() < CANCEL_BEFORE_SHARE:
                at = self._time(t - 2 * HOUR, t - MINUTE)
            else:
                at = t + int(rng.random() * CANCEL_AFTER)
                at -= at % MILLI
                if at > self.gen.end:
                    return
            back = cents if full else max(1, cents * (10 + int(rng.random() * 51)) // 100)
            cancel = self._event(
                SCHEMA_ORDER_CANCELLED,
                customer_id,
                order_id=event["order_id"],
                scope=CANCEL_FULL if full else CANCEL_PARTIAL,
                amount=_money(back),
                currency=currency,
            )
            self._deliver(at, cancel, offset, suffix)

    def _abandoned(self, customer_id: str, t: int, offset: int, suffix: str) -> None:
        """A cart updated at ``t`` and never ordered: sometimes checked out, sometimes
        emptied later."""
        rng = self.rng
        self.carts += 1
        cart_id = f"cart-{self.carts:08d}"
        items = []
        seen: set[int] = set()
        for _ in range(1 + (rng.random() < 0.5) + (rng.random() < 0.25)):
            number = self._product()
            if number in seen:
                continue
            seen.add(number)
            items.append(
                {
                    "product_id": product(number),
                    "quantity": 1 + (rng.random() < 0.2),
                    "unit_price": _money(catalogue_cents(number)),
                    "currency": self.currency,
                }
            )
        self._snapshot(customer_id, cart_id, t, CART_UPDATED, items, offset, suffix)
        last = t
        if rng.random() < CHECKOUT_ABANDONED:
            last = self._time(t + 2 * MINUTE, t + 30 * MINUTE)
            self._snapshot(customer_id, cart_id, last, CART_CHECKOUT, items, offset, suffix)
        if rng.random() < EMPTIED_ABANDONED:
            at = last + HOUR + int(rng.random() * 3 * DAY)
            at -= at % MILLI
            if at <= self.gen.end:
                self._snapshot(customer_id, cart_id, at, CART_EMPTIED, [], offset, suffix)

    def customer(
        self,
        customer_id: str,
        sessions: list[int],
        orders: list[int],
        offset: int,
        suffix: str,
    ) -> None:
        """After a customer's other events: their abandoned carts, a prospect's views,
        and the sign-up at or before the first of all their events."""
        rng = self.rng
        abandoned = 0
        for _ in range(self.carted_orders):
            while rng.random() < ABANDONED_CONTINUE:
                abandoned += 1
        if not orders:
            lo, hi = PROSPECT_VIEWS_PER_SESSION
            for s in sessions:
                for _ in range(lo + int(rng.random() * (hi - lo + 1))):
                    number = self._product()
                    self._view(customer_id, self._time(s, s + 30 * MINUTE), number, offset, suffix)
            if sessions and rng.random() < PROSPECT_CART_SHARE:
                abandoned += 1
        visits = sessions or orders
        for _ in range(abandoned):
            s = visits[int(rng.random() * len(visits))]
            self._abandoned(customer_id, self._time(s, s + 30 * MINUTE), offset, suffix)
        known = [t for t in (*sessions, *orders) if t is not None]
        if self.first_at is not None:
            known.append(self.first_at)
        if known:
            first = min(known)
            at = self._time(first - SIGNUP_LEAD, first)
            self._deliver(at, self._event(SCHEMA_SIGNUP, customer_id), offset, suffix)
        self.first_at = None
        self.carted_orders = 0
        self.currency = "EUR"
