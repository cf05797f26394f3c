"""What the models count of a history (docs/prediction.md "A customer's inputs"):
repeat orders once per UTC day, each order once whatever its events, any line order."""

from __future__ import annotations

from decimal import Decimal

import orjson

from agents.core.prediction import UNIT_MICROS
from streams.feed.timeargs import date_or_time
from streams.model.history import inputs_at, read_history, repeat_days_between


def _order(cid: str, order: str, at: str, amount: str = "10.00", *, event: str = "") -> bytes:
    return orjson.dumps(
        {
            "schema": "purchase/1",
            "event_id": event or f"e-{order}",
            "customer_id": cid,
            "occurred_at": at,
            "order_id": order,
            "amount": amount,
            "currency": "EUR",
        }
    )


LINES = [
    _order("c1", "o1", "2026-01-05T09:00:00Z", "10.00"),
    _order("c1", "o2", "2026-01-05T18:00:00Z", "5.00"),  # same day as the first: not a repeat
    _order("c1", "o3", "2026-01-12T08:00:00Z", "7.50"),
    _order("c1", "o4", "2026-01-12T23:59:00Z", "2.50"),  # same UTC day: one repeat day worth 10
    _order("c1", "o3", "2026-01-13T08:00:00Z", "99", event="retry"),  # a retried order
    _order("c1", "o5", "2026-01-19T10:00:00Z", "30.00"),
    b'{"schema":"session/1","event_id":"s1","customer_id":"c1",'
    b'"occurred_at":"2026-01-20T10:00:00Z","session_id":"x"}',
    b"not json",
    _order("c2", "p1", "2026-01-07T00:00:00Z"),
]


def test_repeat_orders_count_once_per_utc_day_and_an_order_once() -> None:
    history = read_history(LINES, until=None, max_bytes=65536, earliest=0)
    assert history.skipped == {"invalid_json": 1}
    assert history.duplicates == 1
    week = UNIT_MICROS["week"]
    until = date_or_time("2026-01-26")
    one = inputs_at("c1", history.orders["c1"], until, "week")
    assert one is not None
    assert one.x == 2  # Jan 12 and Jan 19
    first = date_or_time("2026-01-05T09:00:00Z")
    assert one.t_x == (date_or_time("2026-01-19T10:00:00Z") - first) / week
    assert (until - first) / week == one.T
    assert one.values == {"EUR": [Decimal("10.00"), Decimal("30.00")]}
    two = inputs_at("c2", history.orders["c2"], until, "day")
    assert two is not None and (two.x, two.t_x, two.T) == (0, 0.0, 19.0)
    # Cut at Jan 12 noon: only the morning order of that day is in.
    cut = inputs_at("c1", history.orders["c1"], date_or_time("2026-01-12T12:00:00Z"), "day")
    assert cut is not None and cut.x == 1 and cut.values == {"EUR": [Decimal("7.50")]}
    # The holdout after that noon: Jan 12 had an order already, so only Jan 19 is new.
    assert (
        repeat_days_between(history.orders["c1"], date_or_time("2026-01-12T12:00:00Z"), until) == 1
    )


def test_the_lines_order_does_not_change_what_is_counted() -> None:
    forward = read_history(LINES, until=None, max_bytes=65536, earliest=0)
    backward = read_history(LINES[::-1], until=None, max_bytes=65536, earliest=0)
    assert forward.orders == backward.orders


def test_orders_after_until_are_not_read() -> None:
    history = read_history(LINES, until=date_or_time("2026-01-12"), max_bytes=65536, earliest=0)
    assert [t for t, _, _ in history.orders["c1"]] == [
        date_or_time("2026-01-05T09:00:00Z"),
        date_or_time("2026-01-05T18:00:00Z"),
    ]
