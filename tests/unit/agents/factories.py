"""Realistic validated events and times for the agents' unit tests.

Times are microseconds since the epoch, like everywhere inside the processor;
``T0`` is a Monday morning so reasons read like the ones users see.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from hypothesis import assume
from hypothesis import strategies as st

from agents.core.clock import WallClock
from agents.core.emissions import Emission
from agents.core.engine import Engine
from agents.core.ids import holdout_bucket
from agents.core.rules.history import Version
from agents.core.settings import DAY, HOUR, CoreSettings
from agents.core.state import CustomerState
from agents.core.timeutil import DEFAULT_MIN_EVENT_TIME, MICROS_PER_SECOND, iso, to_micros
from schemas.records import (
    CONSENT_OPTED_IN,
    CONSENT_OPTED_OUT,
    KIND_CONSENT,
    KIND_PURCHASE,
    KIND_SESSION,
    Event,
)
from streams.config import Config, ConfigError, build_config
from streams.worker.processors import Processors, build_processors

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
    versions: Sequence[Version] = (),
) -> Processors:
    """The ingest and customer processors as the worker builds them
    (streams/worker/processors.py), on the default topic names; ``versions``: rules
    versions the worker read from the rules topic."""
    config = Config(
        partitions=partitions,
        clock=mode,
        core=core or CoreSettings(),
        max_message_bytes=max_message_bytes,
        future_tolerance=future_tolerance,
        min_event_time=min_event_time,
    )
    return build_processors(config, wall, sources, versions)


def line_of(event: Event) -> bytes:
    """The event as a producer writes it (README "Inputs"), one JSONL line."""
    out: dict[str, Any] = {
        "schema": f"{event.kind}/1",
        "event_id": event.event_id,
        "customer_id": event.customer_id,
        "occurred_at": iso(event.occurred_at),
    }
    if event.kind == KIND_PURCHASE:
        out.update(order_id=event.order_id, amount=event.amount, currency=event.currency)
    elif event.kind == KIND_SESSION:
        out["session_id"] = event.session_id
    else:
        out["status"] = event.status
    return orjson.dumps(out)


# --- busy customers under any ladder the configuration accepts ------------------------

MINUTE = 60 * MICROS_PER_SECOND
SCALES = {"M": MINUTE, "H": HOUR, "D": DAY}  # ISO 8601 designator -> micros
GUARD_SALT = "guard"


def _first(held: bool) -> str:
    ids = (f"cus_{n:04d}" for n in itertools.count())
    return next(c for c in ids if (holdout_bucket(c, GUARD_SALT) < 50) == held)


# At holdout_percent 50, the first is held out and the second is not.
GUARD_CUSTOMERS = (_first(True), _first(False))


def duration(n: int, unit: str) -> str:
    """``n`` minutes, hours or days as a user writes it in a RETENTION_* variable."""
    return f"P{n}D" if unit == "D" else f"PT{n}{unit}"


@dataclass(frozen=True)
class BusyCase:
    """Settings as a user gives them (accepted by streams.config), and a history."""

    raw: dict[str, Any]
    core: CoreSettings
    events: list[Event]  # in time order
    until: int

    def __repr__(self) -> str:
        # Short enough for a falsifying example: kind, customer and seconds after T0.
        who = {c: str(i) for i, c in enumerate(GUARD_CUSTOMERS)}
        events = " ".join(
            f"{e.kind[0]}{who.get(e.customer_id, '?')}@{(e.occurred_at - T0) // MICROS_PER_SECOND}"
            for e in self.events
        )
        return (
            f"BusyCase({self.raw!r}, until=T0+{(self.until - T0) // MICROS_PER_SECOND}s, {events})"
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """How hypothesis prints it (it would list every field of a dataclass)."""
        printer.text(repr(self))


@st.composite
def busy_cases(draw: st.DrawFn) -> BusyCase:
    """Ladders, gap, cap and windows in minutes, hours or days, and two customers
    (the first held out at 50 %) whose sessions keep restarting the inactivity ladder
    at a rhythm of their own: often hundreds of firings, most of them suppressed."""
    unit = draw(st.sampled_from(sorted(SCALES)))
    scale = SCALES[unit]
    longest = 4 if unit == "D" else 45  # keeps a history within a few years
    every = draw(st.integers(1, longest))  # the customers' rhythm, in units

    def ladder(most: int, upto: int) -> str:
        steps = draw(st.lists(st.integers(1, upto), min_size=1, max_size=most, unique=True))
        return ",".join(duration(n, unit) for n in sorted(steps))

    # Spans short and long: a long one covers hundreds of firings.
    spans = st.integers(0, 60) | st.integers(150, 2000)
    raw: dict[str, Any] = {
        "second_purchase_steps": ladder(4, 40),
        # Mostly steps within the rhythm, so that each session fires most of them.
        "inactivity_steps": ladder(10, draw(st.sampled_from([every + 1, every + 1, 40]))),
        "overdue_floor": duration(draw(st.integers(1, 20)), unit),
        "overdue_min_orders": draw(st.integers(2, 4)),
        "min_gap": duration(draw(spans), unit),
        "frequency_cap": draw(st.integers(1, 6) | st.integers(7, 250)),
        "frequency_window": duration(draw(spans), unit),
        "attribution_window": duration(draw(st.integers(0, 20)), unit),
        "holdout_percent": draw(st.sampled_from([0, 50, 100])),
        "holdout_salt": GUARD_SALT,
    }
    try:
        core = build_config(raw).core
    except ConfigError:
        assume(False)
        raise
    kinds = ["session"] * 14 + ["purchase"] * 4 + ["opt_out", "opt_in"]
    t, events = T0, []
    for n in range(draw(st.integers(1, 200))):
        units = draw(st.sampled_from([every] * 3 + [-1]))
        units = draw(st.integers(0, longest)) if units < 0 else units
        t += units * scale + draw(st.sampled_from([0, 0, 1, scale // 2]))
        who = GUARD_CUSTOMERS[draw(st.sampled_from([0, 1, 1, 1]))]
        kind = draw(st.sampled_from(kinds))
        if kind == "session":
            events.append(session(who, t, event_id=f"s{n}"))
        elif kind == "purchase":
            events.append(purchase(who, t, f"o{n}", event_id=f"p{n}"))
        else:
            status = OPTED_OUT if kind == "opt_out" else OPTED_IN
            events.append(consent(who, t, status, event_id=f"c{n}"))
    until = t + draw(st.integers(0, 50)) * scale
    return BusyCase(raw, core, events, until)


class DictStore:
    """The StateStore protocol over a dict, as a memory table of one partition behaves."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def scan(self, partition: int) -> Iterable[tuple[str, bytes]]:
        return list(self.data.items())
