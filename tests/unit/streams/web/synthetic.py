"""Synthetic customer states for the summary's tests and timing.

Each customer gets a few sessions and orders over a year, taken in through the
real engine (so decision and conversion counts, spans and stages are the ones a
worker would store), then advanced to ``END``.
"""

from __future__ import annotations

import itertools
import random

from agents.core.engine import Engine
from agents.core.rules import builtin_text, load_rules
from agents.core.settings import DAY, HOUR, CoreSettings
from agents.core.state import CustomerState
from schemas.records import KIND_CANCEL, KIND_CART, KIND_PURCHASE, KIND_VIEW, Event, Item
from tests.unit.agents.factories import T0, consent, purchase, session

END = T0 + 365 * DAY
CURRENCIES = ("EUR", "EUR", "EUR", "USD", "GBP")
_SERIAL = itertools.count()


def customer_states(n: int, seed: int = 1, end: int = END) -> list[CustomerState]:
    rng = random.Random(seed)
    engine = Engine(CoreSettings())
    states = []
    for i in range(n):
        cid = f"cust-{seed}-{i:07d}"
        state = CustomerState(customer_id=cid, partition=i % 4)
        t = T0 + rng.randrange(0, 300 * DAY)
        events = [session(cid, t)]
        if rng.random() < 0.1:
            events.append(consent(cid, t + HOUR, "opted_out"))
        for _ in range(rng.choice((0, 1, 1, 1, 2, 2, 3, 5, 9))):
            t += rng.randrange(HOUR, 120 * DAY)
            if t >= end:
                break
            amount = f"{rng.randrange(100, 50_000) / 100:.2f}"
            events.append(purchase(cid, t, amount=amount, currency=rng.choice(CURRENCIES)))
            if rng.random() < 0.5:
                events.append(session(cid, t + rng.randrange(DAY, 20 * DAY)))
        for e in sorted(events, key=lambda e: (e.occurred_at, e.event_id)):
            if e.occurred_at < end:
                engine.ingest(state, e, e.occurred_at - 1)
        engine.advance(state, end)
        states.append(state)
    return states


def lifecycle_states(n: int, seed: int = 1, end: int = END) -> list[CustomerState]:
    """Customers of a shop running ``lifecycle.toml`` (docs/lifecycle.md): views,
    carts (some checked out, some ordered, some abandoned), orders and full or
    partial cancellations, so the funnel, the recovered revenue of the abandonment
    rules (both groups: 30 % held out) and the cancellations all have data."""
    text = builtin_text("lifecycle").replace(
        "[guardrails]\nholdout_percent = 10.0", "[guardrails]\nholdout_percent = 30.0"
    )
    engine = Engine(CoreSettings(rules=load_rules(text)))
    rng = random.Random(seed)
    states = []
    for i in range(n):
        cid = f"life-{seed}-{i:07d}"

        def ev(kind: str, t: int, cid: str = cid, **fields: object) -> Event:
            return Event(kind, f"{cid}-{next(_SERIAL)}", cid, t, **fields)  # type: ignore[arg-type]

        t = T0 + rng.randrange(0, 300 * DAY)
        events = [session(cid, t)]
        for k in range(rng.choice((0, 1, 2, 4))):
            t += rng.randrange(HOUR, 20 * DAY)
            events.append(ev(KIND_VIEW, t, product_id=f"p{rng.randrange(30)}"))
            if rng.random() < 0.5:
                continue
            cart_id = f"{cid}-cart{k}"
            items = (Item(f"p{rng.randrange(30)}", rng.randrange(1, 4), "12.50", "EUR"),)
            action = "checkout_started" if rng.random() < 0.4 else "updated"
            events.append(ev(KIND_CART, t + HOUR, cart_id=cart_id, action=action, items=items))
            if rng.random() < 0.5:
                # Ordered after a reminder or not at all (abandoned).
                t += rng.randrange(2 * HOUR, 3 * DAY)
                order_id = f"{cid}-o{k}"
                currency = rng.choice(CURRENCIES)
                events.append(
                    ev(
                        KIND_PURCHASE,
                        t,
                        order_id=order_id,
                        amount=f"{rng.randrange(100, 50_000) / 100:.2f}",
                        currency=currency,
                        cart_id=cart_id,
                    )
                )
                if rng.random() < 0.2:
                    scope = rng.choice(("full", "partial"))
                    events.append(
                        ev(
                            KIND_CANCEL,
                            t + rng.randrange(-HOUR, 5 * DAY),
                            order_id=order_id,
                            action=scope,
                            amount="1.25",
                            currency=currency,
                        )
                    )
        state = CustomerState(customer_id=cid, partition=i % 4)
        for e in sorted(events, key=lambda e: (e.occurred_at, e.event_id)):
            if e.occurred_at < end:
                engine.ingest(state, e, e.occurred_at)
        engine.advance(state, end)
        states.append(state)
    return states
