"""Customer state: facts that come out the same whatever the arrival order."""

from __future__ import annotations

import base64
from dataclasses import replace
from decimal import Decimal
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.core.settings import DAY
from agents.core.state import (
    MAX_ORDER_TIMES,
    ORDER_DAYS_SPAN,
    CountKey,
    CustomerState,
    OrderDays,
    RecentFiring,
    _compact,
    order_key,
)
from schemas.records import Event
from tests.unit.agents.factories import OPTED_IN, OPTED_OUT, T0, at, consent, purchase, session

CID = "cus_000481"
MAX_EVENT_IDS = 512


ACTIVE_WINDOW = 90 * DAY


def fold(events: list[Event], max_event_ids: int = MAX_EVENT_IDS) -> CustomerState:
    """What the engine does per event, minus the clock: dedup, remember, apply."""
    state = CustomerState(customer_id=CID)
    for event in events:
        if state.seen(event):
            continue
        state.remember(event, max_event_ids)
        state.apply(event, ACTIVE_WINDOW)
    return state


# --- facts by hand -------------------------------------------------------------------


def test_first_and_second_order_are_the_earliest_two_distinct_orders() -> None:
    late_first = purchase(CID, at(days=1), "ORD-A")
    latest = purchase(CID, at(days=20), "ORD-C")
    earliest = purchase(CID, at(days=0), "ORD-B")
    state = fold([latest, late_first, earliest])
    assert state.first_order_at == at(days=0)
    assert state.second_order_at == at(days=1)
    assert state.last_order_at == at(days=20)
    assert state.orders == 3
    assert state.order_times == [at(days=0), at(days=1), at(days=20)]


def test_two_orders_on_the_same_instant_are_two_orders() -> None:
    state = fold([purchase(CID, at(), "ORD-1"), purchase(CID, at(), "ORD-2")])
    assert state.orders == 2
    assert state.first_order_at == state.second_order_at == at()


def test_spend_is_exact_per_currency() -> None:
    state = fold(
        [
            purchase(CID, at(days=0), amount="19.99"),
            purchase(CID, at(days=1), amount="0.01"),
            purchase(CID, at(days=2), amount="0.10"),
            purchase(CID, at(days=3), amount="120", currency="USD"),
        ]
    )
    assert state.spend == {"EUR": "20.10", "USD": "120"}


def test_last_activity_is_the_latest_order_or_session() -> None:
    state = fold(
        [
            session(CID, at(days=9)),
            purchase(CID, at(days=3)),
            session(CID, at(days=1)),
            consent(CID, at(days=30), OPTED_IN),  # consent is not activity
        ]
    )
    assert state.last_session_at == at(days=9)
    assert state.last_activity_at == at(days=9)
    assert state.first_seen_at == at(days=1)


def test_sessions_alone_make_a_prospect_and_the_first_order_a_new_customer() -> None:
    state = fold([session(CID, at())])
    assert (state.stage, state.orders) == ("prospect", 0)
    state = fold([session(CID, at()), purchase(CID, at(days=1))])
    assert state.stage == "new"
    state = fold([session(CID, at()), purchase(CID, at(days=1)), purchase(CID, at(days=2))])
    assert state.stage == "repeat"


def test_consent_latest_by_event_time_wins_not_latest_arrival() -> None:
    opt_out = consent(CID, at(days=5), OPTED_OUT)
    opt_in_earlier = consent(CID, at(days=2), OPTED_IN)
    state = fold([opt_out, opt_in_earlier])
    assert state.opted_out
    assert (state.consent_status, state.consent_at) == (OPTED_OUT, at(days=5))

    opt_in_later = consent(CID, at(days=8), OPTED_IN)
    state = fold([opt_in_later, opt_out, opt_in_earlier])
    assert not state.opted_out
    assert (state.consent_status, state.consent_at) == (OPTED_IN, at(days=8))


def test_consent_opt_out_wins_a_tie_whichever_arrives_first() -> None:
    opt_in = consent(CID, at(days=3), OPTED_IN)
    opt_out = consent(CID, at(days=3), OPTED_OUT)
    assert fold([opt_in, opt_out]).consent_status == OPTED_OUT
    assert fold([opt_out, opt_in]).consent_status == OPTED_OUT


# --- dedup ---------------------------------------------------------------------------


def test_same_event_id_is_seen_and_counted_once() -> None:
    order = purchase(CID, at(), "ORD-1", event_id="evt-1")
    state = fold([order, order, order])
    assert state.orders == 1
    assert state.spend == {"EUR": "49.90"}
    assert state.seen(order)


def test_same_order_id_under_a_new_event_id_counts_once() -> None:
    first = purchase(CID, at(), "ORD-1", event_id="evt-1")
    retry = purchase(CID, at(), "ORD-1", event_id="evt-1-retry")
    state = fold([first, retry])
    assert state.seen(retry)
    assert state.orders == 1
    assert state.spend == {"EUR": "49.90"}


def test_a_session_is_not_deduplicated_by_an_order_id_it_does_not_have() -> None:
    state = fold([purchase(CID, at(), "ORD-1")])
    assert not state.seen(session(CID, at(days=1)))


def test_event_ids_are_bounded_but_orders_are_remembered_for_life() -> None:
    state = CustomerState(customer_id=CID)
    orders = [purchase(CID, at(days=i), f"ORD-{i}", event_id=f"evt-{i}") for i in range(10)]
    for event in orders:
        state.remember(event, 4)
    assert len(state.event_ids) == 4
    assert "evt-9" in state.event_ids and "evt-5" not in state.event_ids
    assert state.seen(orders[9])
    # The first event id is forgotten, but its order is not: a redelivery is a duplicate.
    assert "evt-0" not in state.event_ids
    assert state.seen(orders[0])
    assert not state.seen(purchase(CID, at(days=1), "ORD-new", event_id="evt-0"))


def test_order_times_keep_the_newest_bounded_window() -> None:
    n = MAX_ORDER_TIMES + 5
    state = fold([purchase(CID, at(days=i)) for i in reversed(range(n))])
    assert state.orders == n
    assert len(state.order_times) == MAX_ORDER_TIMES
    assert state.order_times == [at(days=i) for i in range(5, n)]
    # The earliest two are still exact: they are kept apart from the window.
    assert (state.first_order_at, state.second_order_at) == (at(days=0), at(days=1))


def test_to_dict_from_dict_round_trips_through_json() -> None:
    state = fold(
        [
            purchase(CID, at(), "ORD-1", amount="10.50"),
            session(CID, at(days=2)),
            consent(CID, at(days=3), OPTED_OUT),
        ]
    )
    restored = CustomerState.from_dict(orjson.loads(orjson.dumps(state.to_dict())))
    assert restored == state


def test_recent_firings_and_count_keys_are_stored_as_lists_and_strings() -> None:
    """The typed objects of the core are written in the row format older workers read:
    ``[due_at, rule, step, anchor_at, outcome, converted_at]`` and ``"rule/step/what"``."""
    state = CustomerState(customer_id=CID)
    state.recent_firings = [
        RecentFiring(at(days=7), "second_purchase", 1, at(), "delivered", at(days=8)),
        RecentFiring(at(days=14), "inactivity", 2, at(days=1), "min_gap"),
    ]
    state.decision_counts = {CountKey("second_purchase", 1, "delivered"): 2}
    state.conversion_counts = {CountKey("second_purchase", 1, "holdout"): 1}
    stored = orjson.loads(orjson.dumps(state.to_dict()))
    assert stored["recent_firings"] == [
        [at(days=7), "second_purchase", 1, at(), "delivered", at(days=8)],
        [at(days=14), "inactivity", 2, at(days=1), "min_gap", None],
    ]
    assert stored["decision_counts"] == {"second_purchase/1/delivered": 2}
    assert stored["conversion_counts"] == {"second_purchase/1/holdout": 1}
    restored = CustomerState.from_dict(stored)
    assert restored == state
    assert restored.recent_firings[1].converted_at is None
    assert CountKey.parse("overdue/3/opted_out") == ("overdue", 3, "opted_out")
    assert CountKey("overdue", 3, "opted_out").to_wire() == "overdue/3/opted_out"


# --- the permutation property --------------------------------------------------------


@st.composite
def customer_history(draw: st.DrawFn) -> list[Event]:
    """A customer's events, with producer retries (same content) mixed in."""
    events: list[Event] = []
    n = draw(st.integers(1, 14))
    for i in range(n):
        t = at(days=draw(st.integers(0, 60)), hours=draw(st.sampled_from([0, 12])))
        kind = draw(st.sampled_from(["purchase", "purchase", "session", "consent"]))
        if kind == "purchase":
            cents = draw(st.integers(0, 50_000))
            event = purchase(
                CID,
                t,
                f"ORD-{i}",
                event_id=f"evt-{i}",
                amount=f"{cents // 100}.{cents % 100:02d}",
                currency=draw(st.sampled_from(["EUR", "EUR", "USD"])),
            )
            if draw(st.booleans()):  # the same order resent under a new event id
                events.append(replace(event, event_id=f"evt-{i}-retry"))
        elif kind == "session":
            event = session(CID, t, event_id=f"evt-{i}")
        else:
            event = consent(
                CID, t, draw(st.sampled_from([OPTED_IN, OPTED_OUT])), event_id=f"evt-{i}"
            )
        events.append(event)
        if draw(st.integers(0, 4)) == 0:  # an exact redelivery
            events.append(event)
    return events


def expected_facts(events: list[Event]) -> dict[str, Any]:
    """The facts computed directly from the distinct orders, sessions and consents."""
    orders = {e.order_id: e for e in events if e.kind == "purchase"}
    order_times = sorted(e.occurred_at for e in orders.values())
    sessions = [e.occurred_at for e in events if e.kind == "session"]
    consents = [e for e in events if e.kind == "consent"]
    spend: dict[str, Decimal] = {}
    for e in orders.values():
        assert e.currency is not None and e.amount is not None
        spend[e.currency] = spend.get(e.currency, Decimal(0)) + Decimal(e.amount)
    latest_consent = max(
        consents, key=lambda e: (e.occurred_at, e.status == OPTED_OUT), default=None
    )
    activity = order_times + sessions
    spans: list[list[int]] = []
    for t in order_times:  # an order keeps the customer "active" for the window after it
        if spans and t <= spans[-1][1]:
            spans[-1][1] = t + ACTIVE_WINDOW
        else:
            spans.append([t, t + ACTIVE_WINDOW])
    currencies: dict[str, int] = {}
    for e in orders.values():
        assert e.currency is not None
        currencies[e.currency] = currencies.get(e.currency, 0) + 1
    out: dict[str, Any] = {
        "orders": len(order_times),
        "first_order_at": order_times[0] if order_times else None,
        "second_order_at": order_times[1] if len(order_times) > 1 else None,
        "last_order_at": order_times[-1] if order_times else None,
        "order_times": order_times[-MAX_ORDER_TIMES:],
        "spend": {k: Decimal(v) for k, v in sorted(spend.items())},
        "order_currencies": dict(sorted(currencies.items())),
        "active_spans": spans,
        "last_session_at": max(sessions, default=None),
        "last_activity_at": max(activity, default=None),
        "first_seen_at": min(e.occurred_at for e in events),
        "consent_status": latest_consent.status if latest_consent else None,
        "consent_at": latest_consent.occurred_at if latest_consent else None,
    }
    days = sorted({t // DAY for t in order_times})
    if days:
        # The order-day bitmap (docs/prediction.md "State"): bit i is day days[0] + i.
        bits = sum(1 << (d - days[0]) for d in days)
        raw = bits.to_bytes((bits.bit_length() + 7) // 8, "little")
        out["od"] = [days[0], base64.b64encode(raw).decode()]
    if sessions:
        out["fs"] = min(sessions)
    if orders:
        # The order log (docs/lifecycle.md "Cancellations"): every order while
        # there are at most 35, by time then key.
        out["ol"] = sorted(
            [e.occurred_at, order_key(e.order_id or ""), e.amount, e.currency]
            for e in orders.values()
        )
    return out


@settings(max_examples=200, deadline=None)
@given(data=st.data(), events=customer_history())
def test_any_arrival_order_gives_the_same_facts(data: st.DataObject, events: list[Event]) -> None:
    shuffled = data.draw(st.permutations(events))
    in_time_order = sorted(events, key=lambda e: (e.occurred_at, e.event_id))
    facts = fold(shuffled).facts()
    assert facts == fold(in_time_order).facts()
    # ... and they are the right facts, not just consistent ones.
    facts["spend"] = {k: Decimal(v) for k, v in facts["spend"].items()}
    assert facts == expected_facts(events)


def test_spend_is_exact_for_every_amount_validation_accepts() -> None:
    # Not a realistic basket, but both amounts pass validation (see _amount's range check).
    big = purchase(CID, at(), "ORD-1", amount="100000000000000")
    tiny = [purchase(CID, at(days=d), f"ORD-{d + 1}", amount="0.00000000000005") for d in (1, 2)]
    exact = Decimal("100000000000000.0000000000001")
    assert Decimal(fold([big, *tiny]).spend["EUR"]) == exact
    assert Decimal(fold([*tiny, big]).spend["EUR"]) == exact


_ENTRY_KEYS = ("k", "e", "t", "o", "a", "cur", "s", "st", "ch", "c")


@given(
    kind=st.sampled_from(["purchase", "session", "consent", "other"]),
    keys=st.permutations(_ENTRY_KEYS[1:]).flatmap(
        lambda ks: st.integers(0, len(ks)).map(lambda n: ks[:n])
    ),
    kind_first=st.booleans(),
)
def test_a_loaded_pending_entry_is_what_compacting_it_gives(
    kind: str, keys: list[str], kind_first: bool
) -> None:
    """from_dict keeps an already compact pending entry as parsed (the fast path):
    the state, and the row it writes back, must equal the compacted entry's, keys in
    the same order."""
    order = ["k", *keys] if kind_first else [*keys, "k"]
    entry = {k: (kind if k == "k" else 7 if k == "t" else f"v-{k}") for k in order}
    row = CustomerState(customer_id="c1").to_dict()
    row["pending"] = [entry]
    loaded = CustomerState.from_dict(orjson.loads(orjson.dumps(row))).pending[0]
    expected = _compact(entry)
    assert loaded == expected
    assert list(loaded) == list(expected)


def test_a_row_keeps_the_zone_only_when_there_is_one_and_reads_it_back() -> None:
    # docs/send-windows.md "The customer's zone": rows without a zone are unchanged.
    state = CustomerState("c")
    state.apply(purchase("c", T0))
    plain = state.to_dict()
    assert not {"tz", "tzx"} & set(plain)
    assert CustomerState.from_dict(orjson.loads(orjson.dumps(plain))).to_dict() == plain
    state.apply(replace(session("c", T0 + DAY), timezone="Asia/Tehran"))
    state.apply(replace(session("c", T0 + DAY), timezone="America/Los_Angeles"))
    state.apply(replace(session("c", T0), timezone="Europe/Berlin"))  # older: no change
    state.apply(replace(session("c", T0), timezone_ignored="Mars/Olympus_Mons"))
    row = state.to_dict()
    assert row["tz"] == ["America/Los_Angeles", T0 + DAY]  # a tie: the smaller name
    assert row["tzx"] == ["Mars/Olympus_Mons", T0]
    back = CustomerState.from_dict(orjson.loads(orjson.dumps(row)))
    assert back.to_dict() == row and back.zone == "America/Los_Angeles"


def test_order_days_count_distinct_utc_days_and_round_trip_through_the_row() -> None:
    midnight = (T0 // DAY + 1) * DAY  # the next UTC midnight after T0
    state = fold(
        [
            purchase(CID, midnight - 1),  # the day before ...
            purchase(CID, midnight),  # ... and the next, a microsecond apart
            purchase(CID, midnight + 5),  # the same day again
            purchase(CID, midnight + 40 * DAY),
        ]
    )
    assert state.orders == 4 and state.order_days == 3
    row = orjson.loads(orjson.dumps(state.to_dict()))
    assert row["od"][0] == midnight // DAY - 1 and len(row["od"]) == 2
    restored = CustomerState.from_dict(row)
    assert restored == state and restored.order_days == 3
    assert CustomerState.summary_from_dict(row).order_days == 3
    # A row grows only when its customer orders: no order, no "od".
    assert "od" not in fold([session(CID, at())]).to_dict()
    restored.apply(purchase(CID, midnight + 41 * DAY))
    assert restored.order_days == 4


def test_order_days_past_27_years_slide_and_count_what_fell_off() -> None:
    span = ORDER_DAYS_SPAN
    times = [at(days=0), at(days=5), at(days=span + 100)]
    in_order = fold([purchase(CID, t) for t in times])
    assert in_order.order_days == 3
    od = in_order.to_dict()["od"]
    assert od[2] == 2 and len(base64.b64decode(od[1])) == 1  # only the newest day left
    # Within 27 years of the newest order: exact in any arrival order.
    late = fold([purchase(CID, t) for t in [at(days=span + 100), at(days=200), at(days=150)]])
    assert late.order_days == 3
    # Older than the range once a day was counted: taken as a day already counted.
    older = fold([purchase(CID, t) for t in [at(days=0), at(days=span + 100), at(days=5)]])
    assert older.order_days == 2
    widest = fold([purchase(CID, at(days=d)) for d in range(0, 3 * span, 7)])
    assert len(orjson.dumps(widest.to_dict()["od"])) <= 1700


def test_a_row_written_before_order_days_rebuilds_them_from_its_order_times() -> None:
    state = fold([purchase(CID, at(days=d)) for d in (0, 0.1, 3, 9)])
    row = orjson.loads(orjson.dumps(state.to_dict()))
    del row["od"]
    assert CustomerState.from_dict(row).order_days == 3
    assert CustomerState.summary_from_dict(row).order_days == 3


@settings(max_examples=200)
@given(
    # Days sliding off the bitmap's old end too (ORDER_DAYS_SPAN).
    times=st.lists(
        st.one_of(st.integers(0, 400 * DAY), st.integers(0, 3 * ORDER_DAYS_SPAN * DAY)),
        max_size=30,
    ),
    reads=st.lists(st.booleans(), max_size=30),
)
def test_the_kept_order_day_count_is_the_count_of_the_days_taken_in(
    times: list[int], reads: list[bool]
) -> None:
    """OrderDays keeps its count between orders (docs/performance.md "The core fast
    paths"): read after any order, and after a round trip through the row, it is what
    a set taking the same orders at once counts, so the churn_risk rule reads the
    customer's true x."""
    days = OrderDays()
    for i, t in enumerate(times):
        days.add(t)
        if i < len(reads) and reads[i]:
            fresh = OrderDays()
            for u in times[: i + 1]:
                fresh.add(u)
            assert days.count == fresh.count
            assert OrderDays(days.to_wire()).count == days.count
    fresh = OrderDays()
    for u in times:
        fresh.add(u)
    assert days.count == fresh.count
