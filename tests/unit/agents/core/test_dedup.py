"""Order dedup over the customer's lifetime, in bounded space (agents.core.dedup)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from agents.core.dedup import BLOOM_BITS, EXACT_ORDERS, OrderFilter, RecentIds, hash64
from agents.core.emissions import Firing
from agents.core.engine import Engine
from agents.core.settings import DAY, HOUR, CoreSettings
from agents.core.state import CustomerState
from agents.core.timeutil import to_micros
from schemas.records import Event

T0 = to_micros(datetime(2026, 1, 1, tzinfo=UTC))
CID = "cus-dedup"


def order(n: int, t: int, event_id: str | None = None, amount: str = "10") -> Event:
    return Event(
        "purchase",
        event_id or f"evt-{n}",
        CID,
        t,
        order_id=f"ORD-{n}",
        amount=amount,
        currency="EUR",
    )


def test_a_purchase_redelivered_after_thousands_of_orders_counts_once() -> None:
    engine = Engine(CoreSettings())
    state = CustomerState(customer_id=CID)
    n = 3000
    for i in range(n):
        t = T0 + i * HOUR
        assert engine.ingest(state, order(i, t), t) is not None
        state = CustomerState.from_dict(orjson.loads(orjson.dumps(state.to_dict())))
    assert state.orders == n and state.spend == {"EUR": str(10 * n)}
    # The very first order again, under a new event id (a producer retry), and
    # again under its own event id (long forgotten by the event-id window).
    end = T0 + n * HOUR
    assert engine.ingest(state, order(0, end, event_id="evt-retry"), end) is None
    assert engine.ingest(state, order(0, T0), end) is None
    assert engine.ingest(state, order(599, end), end) is None
    assert state.orders == n and state.spend == {"EUR": str(10 * n)}
    # A new order still counts (the filter went Bloom past EXACT_ORDERS).
    assert not state.order_ids.exact
    assert engine.ingest(state, order(n, end), end) is not None
    assert state.orders == n + 1


def test_the_filter_is_exact_then_bloom_with_the_documented_false_positive_rate() -> None:
    f = OrderFilter()
    for i in range(EXACT_ORDERS):
        f.add(f"o{i}")
    assert f.exact and f.count == EXACT_ORDERS
    assert all(f"o{i}" in f for i in range(EXACT_ORDERS))
    assert not any(f"new{i}" in f for i in range(20_000))  # exact: no false positive
    for i in range(EXACT_ORDERS, 5000):
        f.add(f"o{i}")
    assert not f.exact and f.count == 5000
    assert all(f"o{i}" in f for i in range(5000))  # never a false negative
    false_positives = sum(f"new{i}" in f for i in range(100_000))
    assert false_positives < 100_000 * 0.004  # documented: about 0.2% at 5,000 orders
    # Bounded: the Bloom form is the same size whatever the count.
    size = len(f.to_wire())
    for i in range(5000, 9000):
        f.add(f"o{i}")
    assert abs(len(f.to_wire()) - size) <= 2
    assert size < BLOOM_BITS // 8 * 4 // 3 + 16


def test_filters_round_trip_and_compare_by_content() -> None:
    f = OrderFilter()
    for i in range(EXACT_ORDERS + 3):
        f.add(f"o{i}")
        g = OrderFilter(f.to_wire())
        assert g == f and g.count == f.count and ("o0" in g)
    r = RecentIds()
    for i in range(10):
        r.add(f"e{i}", 4)
    assert RecentIds(r.to_wire()) == r and len(RecentIds(r.to_wire())) == 4


def test_hash64_is_stable_across_processes() -> None:
    # Pinned: rows written by one version are read by the next.
    assert hash64("ORD-1") == hash64("ORD-1") != hash64("ORD-2")
    assert hash64("ORD-1") == int.from_bytes(
        __import__("hashlib").blake2b(b"ORD-1", digest_size=8).digest(), "big"
    )


def test_a_redelivered_order_never_converts_or_resets_a_ladder() -> None:
    engine = Engine(CoreSettings(holdout_percent=0.0))
    state = CustomerState(customer_id=CID)
    engine.ingest(state, order(1, T0), T0)
    for i in range(2, 700):  # many orders on the same day: the ladder anchors move
        engine.ingest(state, order(i, T0 + i), T0 + i)
    fired = [f for f in engine.advance(state, T0 + 8 * DAY) if isinstance(f, Firing)]
    assert [(f.rule, f.delivered) for f in fired] == [("overdue", True)]
    # The first order again, inside the overdue firing's attribution window: it is
    # neither a conversion nor activity.
    again = engine.ingest(state, order(1, T0 + 9 * DAY, event_id="evt-x"), T0 + 9 * DAY)
    assert again is None
    assert state.orders == 699 and state.last_activity_at == T0 + 699
    assert state.conversion_counts == {}
