"""Cancelled orders (docs/lifecycle.md "Cancellations"): a cancellation takes effect
at its own time; orders, spend, the first, second and last order and the order
times are net of it; activity is not undone; one that comes before its order
waits for it (at most 8)."""

from __future__ import annotations

import itertools
from decimal import Decimal

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.core.emissions import Firing
from agents.core.engine import Engine
from agents.core.settings import DAY, CoreSettings
from agents.core.state import (
    MAX_PENDING_CANCELS,
    ORDER_LOG_FIRST,
    ORDER_LOG_NEWEST,
    CustomerState,
    order_key,
)
from schemas.records import CANCEL_FULL, CANCEL_PARTIAL, KIND_CANCEL, Event
from tests.unit.agents.factories import at, purchase, session

CID = "cus_000481"
_serial = itertools.count(1)


def cancel(t: int, order_id: str, scope: str = CANCEL_FULL, amount: str = "49.90") -> Event:
    return Event(
        KIND_CANCEL,
        f"evt-x-{next(_serial)}",
        CID,
        t,
        order_id=order_id,
        amount=amount,
        currency="EUR",
        action=scope,
    )


def fold(events: list[Event]) -> CustomerState:
    """The engine's fold minus the clock, in time order (as the engine applies)."""
    state = CustomerState(customer_id=CID)
    for event in sorted(events, key=lambda e: (e.occurred_at, e.event_id)):
        if state.seen(event):
            continue
        state.remember(event, 512)
        state.apply(event, 90 * DAY)
    return state


def orders(n: int, start: float = 0) -> list[Event]:
    return [purchase(CID, at(days=start + i), f"ORD-{i}") for i in range(n)]


def roundtrip(state: CustomerState) -> CustomerState:
    again = CustomerState.from_dict(orjson.loads(orjson.dumps(state.to_dict())))
    assert again == state
    return again


def test_a_cancellation_after_its_order_takes_it_out_of_orders_and_spend_but_not_activity() -> None:
    events = [*orders(2), cancel(at(days=5), "ORD-1")]
    state = roundtrip(fold(events))
    assert (state.orders, state.spend, state.order_currencies) == (1, {"EUR": "49.90"}, {"EUR": 1})
    assert (state.first_order_at, state.second_order_at, state.last_order_at) == (at(), None, at())
    assert state.order_times == [at()]
    assert [e.key for e in state.order_log] == [order_key("ORD-0")]
    # Repeat -> new: one order left.  The customer did come back on day 1.
    assert state.stage == "new"
    assert state.last_activity_at == at(days=1) and state.order_days == 2
    assert (state.cancelled_orders, state.partial_cancels, state.refunded) == (
        1,
        0,
        {"EUR": "49.90"},
    )


def test_cancelling_the_only_order_makes_a_prospect_again() -> None:
    state = fold([*orders(1), cancel(at(days=1), "ORD-0")])
    assert (state.orders, state.stage, state.first_order_at, state.last_order_at) == (
        0,
        "prospect",
        None,
        None,
    )
    assert state.spend == {"EUR": "0"} and state.order_currencies == {}


def test_cancelling_the_first_order_makes_the_second_the_first() -> None:
    state = fold([*orders(3), cancel(at(days=9), "ORD-0")])
    assert (state.orders, state.first_order_at, state.second_order_at) == (
        2,
        at(days=1),
        at(days=2),
    )
    assert state.order_at(1) == at(days=1) and state.order_at(3) is None


def test_cancelling_the_second_order_makes_the_third_the_second() -> None:
    state = fold([*orders(3), cancel(at(days=9), "ORD-1")])
    assert (state.orders, state.first_order_at, state.second_order_at) == (2, at(), at(days=2))
    assert state.order_times == [at(), at(days=2)]


def test_cancelling_a_middle_order_of_more_than_35_adjusts_counts_and_spend_only() -> None:
    n = ORDER_LOG_FIRST + ORDER_LOG_NEWEST + 5
    state = fold(orders(n))
    assert len(state.order_log) == ORDER_LOG_FIRST + ORDER_LOG_NEWEST
    times = list(state.order_times)
    state.apply(cancel(at(days=n + 1), "ORD-5", amount="10"))  # not in the log
    assert state.orders == n - 1 and state.cancelled_orders == 1
    assert state.spend == {"EUR": f"{49.90 * n - 10:.2f}"}
    assert (state.first_order_at, state.second_order_at, state.last_order_at) == (
        at(),
        at(days=1),
        at(days=n - 1),
    )
    assert state.order_times == times
    # The newest one is in the log: undone exactly, the one before it is the last.
    state.apply(cancel(at(days=n + 2), f"ORD-{n - 1}"))
    assert state.last_order_at == at(days=n - 2) and state.orders == n - 2
    assert state.order_times == times[:-1]
    # The k-th order is read from the log while it holds it.
    assert state.order_at(2) == at(days=1) and state.order_at(n - 2) == at(days=n - 2)
    assert state.order_at(4) is None and state.order_at(10) == at(days=10)
    roundtrip(state)


def test_a_partial_cancellation_lowers_spend_and_the_entry_but_not_orders() -> None:
    state = fold([*orders(2), cancel(at(days=3), "ORD-0", CANCEL_PARTIAL, "9.90")])
    assert (state.orders, state.spend["EUR"], state.partial_cancels) == (2, "89.90", 1)
    assert state.order_log[0].amount == "40.00"
    # Then cancelled in full: what is left of it leaves spend, never below 0.
    state.apply(cancel(at(days=4), "ORD-0", CANCEL_FULL, "40.00"))
    assert (state.orders, state.spend["EUR"], state.cancelled_orders) == (1, "49.90", 1)
    assert state.refunded == {"EUR": "49.90"}


def test_a_partial_cancellation_larger_than_the_order_stops_at_zero() -> None:
    state = fold([*orders(1), cancel(at(days=3), "ORD-0", CANCEL_PARTIAL, "500")])
    assert state.spend == {"EUR": "0"} and state.order_log[0].amount == "0"


def test_a_second_full_cancellation_of_one_order_changes_nothing() -> None:
    once = fold([*orders(3), cancel(at(days=5), "ORD-1")])
    twice = fold([*orders(3), cancel(at(days=5), "ORD-1"), cancel(at(days=6), "ORD-1")])
    assert (twice.orders, twice.spend, twice.cancelled_orders) == (once.orders, once.spend, 1)
    # Also beyond 35 orders, where the log cannot tell.
    n = ORDER_LOG_FIRST + ORDER_LOG_NEWEST + 2
    state = fold([*orders(n), cancel(at(days=n), "ORD-5"), cancel(at(days=n + 1), "ORD-5")])
    assert state.orders == n - 1


def test_a_cancellation_before_its_order_waits_and_the_order_is_never_counted() -> None:
    events = [*orders(1), cancel(at(days=2), "ORD-LATE")]
    state = fold(events)
    assert state.pending_cancels == [
        [order_key("ORD-LATE"), at(days=2), CANCEL_FULL, "49.90", "EUR"]
    ]
    assert (state.orders, state.cancelled_orders) == (1, 0)
    state = roundtrip(state)
    state.apply(purchase(CID, at(days=3), "ORD-LATE"))
    # Placed and cancelled at once: counted as cancelled, never in orders; the
    # customer did come (activity).
    assert (state.orders, state.cancelled_orders, state.pending_cancels) == (1, 1, [])
    assert state.spend == {"EUR": "49.90"} and state.last_order_at == at()
    assert state.last_activity_at == at(days=3) and state.stage == "new"


def test_a_partial_cancellation_before_its_order_applies_when_it_comes() -> None:
    state = fold(
        [cancel(at(), "ORD-1", CANCEL_PARTIAL, "9.90"), purchase(CID, at(days=1), "ORD-1")]
    )
    assert (state.orders, state.spend, state.partial_cancels) == (1, {"EUR": "40.00"}, 1)


def test_cancellations_of_unknown_orders_keep_the_newest_eight() -> None:
    state = fold([cancel(at(days=i), f"ORD-?{i}") for i in range(MAX_PENDING_CANCELS + 3)])
    assert len(state.pending_cancels) == MAX_PENDING_CANCELS
    assert [c[1] for c in state.pending_cancels] == [at(days=i) for i in range(3, 11)]
    assert state.cancels_dropped == 3 and state.orders == 0 and state.stage == "prospect"
    assert roundtrip(state).to_dict()["cn"] == [0, 0, 3, {}, []]


def test_an_engine_applies_a_cancellation_after_a_future_dated_order_at_its_own_time() -> None:
    """The order arrives first but is dated after the clock (it waits); the
    cancellation, dated before it, is applied first: it waits for its order rather
    than being taken for a cancellation of an order already counted."""
    engine = Engine(CoreSettings(holdout_percent=0.0))
    state = CustomerState(customer_id=CID, partition=0)
    engine.ingest(state, purchase(CID, at(), "ORD-0"), at())
    engine.ingest(state, purchase(CID, at(days=3), "ORD-1"), at(days=1))  # waits
    engine.ingest(state, cancel(at(days=2), "ORD-1"), at(days=2))
    assert state.orders == 1 and len(state.pending_cancels) == 1
    engine.advance(state, at(days=4))
    assert (state.orders, state.cancelled_orders, state.pending_cancels) == (1, 1, [])
    assert state.last_order_at == at() and state.stage == "new"


def test_a_customer_without_cancellations_keeps_no_cancellation_keys() -> None:
    row = fold([*orders(2), session(CID, at(days=3))]).to_dict()
    assert "cx" not in row and "cn" not in row


@st.composite
def orders_and_cancellations(draw: st.DrawFn) -> list[Event]:
    """Up to 12 orders and 6 cancellations (full or partial, of a known order or
    not), at any times: cancellations before their order included."""
    events: list[Event] = []
    n = draw(st.integers(1, 12))
    for i in range(n):
        cents = draw(st.integers(1000, 9999))
        t = at(days=draw(st.integers(0, 20)))
        events.append(purchase(CID, t, f"ORD-{i}", amount=f"{cents // 100}.{cents % 100:02d}"))
    for _ in range(draw(st.integers(0, 6))):
        target = draw(st.integers(0, n))  # n: an order never placed
        scope = draw(st.sampled_from([CANCEL_FULL, CANCEL_PARTIAL]))
        t = at(days=draw(st.integers(0, 20)), hours=1)
        events.append(cancel(t, f"ORD-{target}", scope, "1.00" if scope == CANCEL_PARTIAL else "0"))
    return events


@settings(max_examples=300, deadline=None)
@given(orders_and_cancellations())
def test_orders_spend_and_first_second_last_are_net_of_cancellations(events: list[Event]) -> None:
    """In time order (as the engine applies), whatever the cancellations' times
    relative to their orders: a fully cancelled order is not counted, a partial
    one lowers spend, and the first, second and last order are those left."""
    state = roundtrip(fold(events))
    placed = {e.order_id or "": e for e in events if e.kind == "purchase"}
    ordered = sorted(events, key=lambda e: (e.occurred_at, e.event_id))
    gone: set[str] = set()
    partial: dict[str, int] = {}
    for e in ordered:  # a partial after the full one finds nothing left
        oid = e.order_id or ""
        if e.kind == KIND_CANCEL and oid in placed and oid not in gone:
            if e.action == CANCEL_FULL:
                gone.add(oid)
            else:
                partial[oid] = partial.get(oid, 0) + 1
    left = sorted((e.occurred_at, oid) for oid, e in placed.items() if oid not in gone)
    times = [t for t, _ in left]
    assert state.orders == len(left) and state.cancelled_orders == len(gone)
    assert (state.first_order_at, state.second_order_at, state.last_order_at) == (
        times[0] if times else None,
        times[1] if len(times) > 1 else None,
        times[-1] if times else None,
    )
    assert state.order_times == times
    spend = sum(
        (Decimal(placed[oid].amount or "0") - partial.get(oid, 0) for _, oid in left), Decimal(0)
    )
    assert Decimal(state.spend["EUR"]) == spend
    assert state.order_at(1) == (times[0] if times else None)
    assert state.stage == ("prospect" if not times else "new" if len(times) == 1 else "repeat")
    # Only cancellations of the order never placed still wait.
    assert state.pending_cancels == [
        c for c in state.pending_cancels if c[0] == order_key(f"ORD-{len(placed)}")
    ]


def firings_of(cancelled: bool) -> tuple[list[tuple[str, int, int]], CustomerState]:
    engine = Engine(CoreSettings(holdout_percent=0.0))
    state = CustomerState(customer_id=CID, partition=0)
    engine.ingest(state, purchase(CID, at(), "ORD-0"), at())
    engine.ingest(state, purchase(CID, at(days=3), "ORD-1"), at(days=3))
    if cancelled:
        engine.ingest(state, cancel(at(days=4), "ORD-1"), at(days=4))
    out = engine.advance(state, at(days=40))
    return [(f.rule, f.step, f.due_at) for f in out if isinstance(f, Firing)], state


def test_after_the_second_order_is_cancelled_the_second_purchase_ladder_runs_again() -> None:
    """Decisions after a cancellation do not count its order (the default rules):
    one order left, so second_purchase is due from the first order; the inactivity
    ladder keeps the cancelled order's activity (the customer did come back)."""
    kept, _ = firings_of(cancelled=False)
    assert [r for r, _, _ in kept] == ["inactivity", "inactivity"]
    fired, state = firings_of(cancelled=True)
    assert ("second_purchase", 1, at(days=7)) in fired
    assert ("inactivity", 1, at(days=17)) in fired  # 14 days after day 3, as without
    assert (state.orders, state.cancelled_orders) == (1, 1)
