"""Realistic validated events and times for the agents' unit tests.

Times are microseconds since the epoch, like everywhere inside the processor;
``T0`` is a Monday morning so reasons read like the ones users see.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from agents.core.clock import WallClock
from agents.core.engine import Emission, Engine
from agents.core.settings import DAY, HOUR, CoreSettings
from agents.core.state import CustomerState
from agents.core.timeutil import DEFAULT_MIN_EVENT_TIME, to_micros
from schemas.records import (
    CONSENT_OPTED_IN,
    CONSENT_OPTED_OUT,
    KIND_CONSENT,
    KIND_PURCHASE,
    KIND_SESSION,
    Event,
)
from streams.config import Config
from streams.processors import Processors, build_processors

T0 = to_micros(datetime(2026, 3, 2, 10, 0, tzinfo=UTC))
OPTED_IN = CONSENT_OPTED_IN
OPTED_OUT = CONSENT_OPTED_OUT

_serial = itertools.count(1)

# A purchase as a producer writes it on retention.purchases (README "Inputs").
PURCHASE_WIRE: dict[str, Any] = {
    "schema": "purchase/1",
    "event_id": "evt-7f3a9c21",
    "customer_id": "cus_000481",
    "occurred_at": "2026-03-02T10:15:00+02:00",
    "order_id": "ORD-2026-000913",
    "amount": 59.9,
    "currency": "EUR",
}


def at(days: float = 0, hours: float = 0) -> int:
    """T0 plus a number of days and hours."""
    return T0 + round(days * DAY) + round(hours * HOUR)


def purchase(
    customer: str,
    t: int,
    order_id: str | None = None,
    *,
    event_id: str | None = None,
    amount: str = "49.90",
    currency: str = "EUR",
) -> Event:
    n = next(_serial)
    return Event(
        KIND_PURCHASE,
        event_id or f"evt-p-{n:06d}",
        customer,
        t,
        order_id=order_id or f"ORD-{n:06d}",
        amount=amount,
        currency=currency,
        channel="web",
    )


def session(customer: str, t: int, *, event_id: str | None = None) -> Event:
    n = next(_serial)
    return Event(
        KIND_SESSION, event_id or f"evt-s-{n:06d}", customer, t, session_id=f"sess-{n:06d}"
    )


def consent(customer: str, t: int, status: str, *, event_id: str | None = None) -> Event:
    n = next(_serial)
    return Event(KIND_CONSENT, event_id or f"evt-c-{n:06d}", customer, t, status=status)


def feed_in_time_order(
    engine: Engine, state: CustomerState, events: list[Event], until: int
) -> list[Emission]:
    """Each event taken in as the clock reaches it (time order), then advance to ``until``."""
    out: list[Emission] = []
    for e in sorted(events, key=lambda e: (e.occurred_at, e.event_id)):
        got = engine.ingest(state, e, e.occurred_at - 1)
        assert got is not None, f"{e.event_id} was taken for a duplicate"
        out += got
    return out + engine.advance(state, until)


def lag_needed(arrivals: list[Event]) -> int:
    """The smallest lateness that is strictly more than any event is late by."""
    newest, worst = arrivals[0].occurred_at, 0
    for e in arrivals:
        worst = max(worst, newest - e.occurred_at)
        newest = max(newest, e.occurred_at)
    return worst + 1


def processors(
    wall: WallClock,
    *,
    mode: str = "stream",
    core: CoreSettings | None = None,
    partitions: int = 2,
    max_message_bytes: int = 64 * 1024,
    future_tolerance: int = DAY,
    sources: Iterable[str] | None = None,
    min_event_time: int = DEFAULT_MIN_EVENT_TIME,
) -> Processors:
    """The ingest and customer processors as the worker builds them
    (streams/processors.py), on the default topic names."""
    config = Config(
        partitions=partitions,
        clock=mode,
        core=core or CoreSettings(),
        max_message_bytes=max_message_bytes,
        future_tolerance=future_tolerance,
        min_event_time=min_event_time,
    )
    return build_processors(config, wall, sources)
