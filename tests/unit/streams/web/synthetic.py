"""Synthetic customer states for the summary's tests and timing.

Each customer gets a few sessions and orders over a year, taken in through the
real engine (so decision and conversion counts, spans and stages are the ones a
worker would store), then advanced to ``END``.
"""

from __future__ import annotations

import random

from agents.core.engine import Engine
from agents.core.settings import DAY, HOUR, CoreSettings
from agents.core.state import CustomerState
from tests.unit.agents.factories import T0, consent, purchase, session

END = T0 + 365 * DAY
CURRENCIES = ("EUR", "EUR", "EUR", "USD", "GBP")


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
