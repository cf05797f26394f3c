"""The lifecycle's facts (docs/lifecycle.md "Facts"): sign-up, first session, views,
carts and the funnel's firsts, the same whatever the arrival order; what an order
does to the kept carts; the row keys, omitted when empty, and old rows loading."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.core.state import MAX_CARTS, MAX_VIEWS, CartEntry, CustomerState
from schemas.records import (
    CART_CHECKOUT,
    CART_EMPTIED,
    CART_UPDATED,
    KIND_CART,
    KIND_PURCHASE,
    KIND_SIGNUP,
    KIND_VIEW,
    Event,
    Item,
)
from tests.unit.agents.factories import at, purchase, session

CID = "cus_000481"
_serial = itertools.count(1)


def fold(events: list[Event]) -> CustomerState:
    """What the engine does per event, minus the clock: dedup, remember, apply."""
    state = CustomerState(customer_id=CID)
    for event in events:
        if state.seen(event):
            continue
        state.remember(event, 512)
        state.apply(event)
    return state


def signup(t: int) -> Event:
    return Event(KIND_SIGNUP, f"evt-su-{next(_serial)}", CID, t)


def view(t: int, product: str, *, event_id: str | None = None) -> Event:
    return Event(KIND_VIEW, event_id or f"evt-v-{next(_serial)}", CID, t, product_id=product)


def item(product: str, quantity: int = 1, price: str = "19.90") -> Item:
    return Item(product, quantity, price, "EUR")


def cart(t: int, cart_id: str, action: str = CART_UPDATED, *products: str) -> Event:
    return Event(
        KIND_CART,
        f"evt-ct-{next(_serial)}",
        CID,
        t,
        cart_id=cart_id,
        action=action,
        items=tuple(item(p) for p in products),
    )


def order(t: int, cart_id: str | None = None, *products: str) -> Event:
    n = next(_serial)
    return Event(
        KIND_PURCHASE,
        f"evt-o-{n}",
        CID,
        t,
        order_id=f"ORD-{n}",
        amount="19.90",
        currency="EUR",
        cart_id=cart_id,
        items=tuple(item(p) for p in products) if products else None,
    )


def lifecycle_facts(state: CustomerState) -> dict[str, Any]:
    """The facts whose fold does not depend on the arrival order."""
    return {
        "signup_at": state.signup_at,
        "first_session_at": state.first_session_at,
        "vw": [state.first_view_at, state.last_view_at, state.views],
        "carts": [(c.cart_id, c.at, c.action, c.items) for c in state.carts],
        "fc": [state.first_cart_at, state.first_checkout_at],
        "last_activity_at": state.last_activity_at,
        "stage": state.stage,
    }


# --- by hand ---------------------------------------------------------------------------


def test_signup_and_first_session_are_the_earliest_and_neither_views_nor_signups_are_activity() -> (
    None
):
    state = fold([signup(at(days=3)), view(at(days=9), "p1"), signup(at(days=1))])
    assert state.signup_at == at(days=1)
    # A sign-up and a view are not visits: no activity, still a prospect.
    assert state.last_activity_at is None and state.stage == "prospect"
    state = fold([session(CID, at(days=5)), session(CID, at(days=2)), session(CID, at(days=7))])
    assert state.first_session_at == at(days=2) and state.last_session_at == at(days=7)


def test_views_keep_the_newest_five_distinct_products_newest_first() -> None:
    events = [view(at(hours=h), f"p{h}") for h in range(8)]
    events += [view(at(hours=1.5), "p7"), view(at(hours=9), "p3")]  # p3 again, newer
    state = fold(events)
    assert (state.first_view_at, state.last_view_at) == (at(), at(hours=9))
    assert state.views == [
        [at(hours=9), "p3"],
        [at(hours=7), "p7"],
        [at(hours=6), "p6"],
        [at(hours=5), "p5"],
        [at(hours=4), "p4"],
    ]
    assert len(state.views) == MAX_VIEWS


def test_views_at_one_instant_keep_the_smaller_product_ids() -> None:
    state = fold([view(at(), p) for p in ["f", "b", "d", "a", "e", "c"]])
    assert [p for _, p in state.views] == ["a", "b", "c", "d", "e"]


def test_the_newest_snapshot_of_a_cart_wins_and_at_one_instant_emptied_wins() -> None:
    state = fold(
        [
            cart(at(hours=2), "c1", CART_UPDATED, "a", "b"),
            cart(at(hours=1), "c1", CART_CHECKOUT, "a"),  # older: does not replace
        ]
    )
    (c,) = state.carts
    assert (c.at, c.action, [i.product_id for i in c.items]) == (
        at(hours=2),
        CART_UPDATED,
        ["a", "b"],
    )
    for events in (
        [cart(at(), "c1", CART_CHECKOUT, "a"), cart(at(), "c1", CART_EMPTIED)],
        [cart(at(), "c1", CART_EMPTIED), cart(at(), "c1", CART_CHECKOUT, "a")],
    ):
        assert fold(events).carts[0].action == CART_EMPTIED


def test_an_open_snapshot_without_items_is_read_as_emptied() -> None:
    state = fold([cart(at(), "c1", CART_CHECKOUT)])
    assert state.carts[0].action == CART_EMPTIED
    assert (state.first_cart_at, state.first_checkout_at) == (None, None)


def test_only_the_three_carts_with_the_newest_snapshots_are_kept() -> None:
    state = fold([cart(at(hours=h), f"c{h}", CART_UPDATED, "a") for h in range(5)])
    assert [c.cart_id for c in state.carts] == ["c4", "c3", "c2"]
    assert len(state.carts) == MAX_CARTS
    # An older snapshot of a forgotten cart does not bring it back; a newer one does.
    state.apply(cart(at(hours=0.5), "c0", CART_UPDATED, "a"))
    assert [c.cart_id for c in state.carts] == ["c4", "c3", "c2"]
    state.apply(cart(at(hours=6), "c0", CART_UPDATED, "a"))
    assert [c.cart_id for c in state.carts] == ["c0", "c4", "c3"]


def test_the_funnel_firsts_are_the_first_cart_with_items_and_the_first_checkout() -> None:
    state = fold(
        [
            cart(at(days=1), "c1", CART_EMPTIED),
            cart(at(days=2), "c1", CART_UPDATED, "a"),
            cart(at(days=4), "c2", CART_CHECKOUT, "b"),
            cart(at(days=3), "c3", CART_CHECKOUT, "b"),
        ]
    )
    assert (state.first_cart_at, state.first_checkout_at) == (at(days=2), at(days=3))


def test_an_order_of_its_cart_at_or_after_the_snapshot_sets_ordered_at_and_another_does_not() -> (
    None
):
    state = fold(
        [
            cart(at(), "c1", CART_UPDATED, "a"),
            cart(at(), "c2", CART_UPDATED, "b"),
            order(at(hours=1), "c2"),
        ]
    )
    by_id = {c.cart_id: c for c in state.carts}
    assert by_id["c2"].ordered_at == at(hours=1)
    assert by_id["c1"].ordered_at is None and by_id["c1"].matched_at is None


def test_an_order_sharing_a_product_sets_matched_at_and_a_newer_snapshot_resets_both() -> None:
    state = fold(
        [
            cart(at(), "c1", CART_UPDATED, "a", "b"),
            order(at(hours=1), None, "x", "b"),
            order(at(hours=2), "c1"),
        ]
    )
    c = state.carts[0]
    assert (c.matched_at, c.ordered_at) == (at(hours=1), at(hours=2))
    state.apply(cart(at(hours=3), "c1", CART_UPDATED, "a"))
    assert (state.carts[0].matched_at, state.carts[0].ordered_at) == (None, None)


def test_an_order_of_a_cart_not_kept_changes_no_cart() -> None:
    state = fold([cart(at(), "c1", CART_UPDATED, "a"), order(at(hours=1), "c9", "z")])
    assert state.carts == [CartEntry("c1", at(), CART_UPDATED, (item("a"),))]


# --- any arrival order ------------------------------------------------------------------


@st.composite
def lifecycle_history(draw: st.DrawFn) -> list[Event]:
    events: list[Event] = []
    for i in range(draw(st.integers(1, 30))):
        t = at(hours=draw(st.integers(0, 12)))  # few instants: ties on purpose
        kind = draw(st.sampled_from(["signup", "session", "view", "view", "cart", "cart"]))
        if kind == "signup":
            event = Event(KIND_SIGNUP, f"e{i}", CID, t)
        elif kind == "session":
            event = session(CID, t, event_id=f"e{i}")
        elif kind == "view":
            event = view(t, draw(st.sampled_from("abcdefgh")), event_id=f"e{i}")
        else:
            products = draw(st.lists(st.sampled_from("abcd"), max_size=3))
            action = draw(st.sampled_from([CART_UPDATED, CART_CHECKOUT, CART_EMPTIED]))
            event = Event(
                KIND_CART,
                f"e{i}",
                CID,
                t,
                cart_id=draw(st.sampled_from(["c1", "c2", "c3", "c4", "c5"])),
                action=action,
                items=tuple(item(p, draw(st.integers(1, 3))) for p in products),
            )
        events.append(event)
        if draw(st.integers(0, 4)) == 0:
            events.append(event)  # an exact redelivery
    return events


def expected(events: list[Event]) -> dict[str, Any]:
    """The facts read directly from the distinct events."""
    events = list({e.event_id: e for e in events}.values())
    views: dict[str, int] = {}
    for e in events:
        if e.kind == KIND_VIEW:
            assert e.product_id is not None
            views[e.product_id] = max(views.get(e.product_id, e.occurred_at), e.occurred_at)
    rank = {CART_UPDATED: 0, CART_CHECKOUT: 1, CART_EMPTIED: 2}
    newest: dict[str, tuple[Any, ...]] = {}
    for e in events:
        if e.kind == KIND_CART:
            assert e.cart_id is not None and e.items is not None and e.action is not None
            action = e.action if e.items else CART_EMPTIED
            items_text = orjson.dumps([i.to_wire() for i in e.items])
            key = (e.occurred_at, rank[action], items_text)
            if e.cart_id not in newest or key > newest[e.cart_id][0]:
                newest[e.cart_id] = (key, action, e.items)
    kept = sorted(newest.items(), key=lambda kv: (-kv[1][0][0], kv[0]))[:MAX_CARTS]
    opened = [e for e in events if e.kind == KIND_CART and e.items and e.action != CART_EMPTIED]
    sessions = [e.occurred_at for e in events if e.kind == "session"]
    view_times = [e.occurred_at for e in events if e.kind == KIND_VIEW]
    return {
        "signup_at": min((e.occurred_at for e in events if e.kind == KIND_SIGNUP), default=None),
        "first_session_at": min(sessions, default=None),
        "vw": [
            min(view_times, default=None),
            max(view_times, default=None),
            [[t, p] for p, t in sorted(views.items(), key=lambda pt: (-pt[1], pt[0]))][:MAX_VIEWS],
        ],
        "carts": [(cid, v[0][0], v[1], v[2]) for cid, v in kept],
        "fc": [
            min((e.occurred_at for e in opened), default=None),
            min((e.occurred_at for e in opened if e.action == CART_CHECKOUT), default=None),
        ],
        "last_activity_at": max(sessions, default=None),  # views, carts, sign-ups: no
        "stage": "prospect",
    }


@settings(max_examples=300, deadline=None)
@given(data=st.data(), events=lifecycle_history())
def test_any_arrival_order_gives_the_same_lifecycle_facts(
    data: st.DataObject, events: list[Event]
) -> None:
    shuffled = data.draw(st.permutations(events))
    facts = lifecycle_facts(fold(shuffled))
    assert facts == lifecycle_facts(fold(sorted(events, key=lambda e: (e.occurred_at, e.event_id))))
    assert facts == expected(events)
    # The row reads back to the same facts.
    state = fold(shuffled)
    assert CustomerState.from_dict(orjson.loads(orjson.dumps(state.to_dict()))) == state


# --- the row ------------------------------------------------------------------------------


def test_the_lifecycle_row_keys_round_trip_and_are_omitted_when_empty() -> None:
    plain = fold([session(CID, at()), purchase(CID, at(days=1), "ORD-1")]).to_dict()
    for key in ("su", "vw", "ct", "fc", "cx", "cn"):
        assert key not in plain
    state = fold(
        [
            signup(at()),
            session(CID, at(hours=1)),
            view(at(hours=2), "p1"),
            cart(at(hours=3), "c1", CART_CHECKOUT, "p1"),
            order(at(hours=4), "c1", "p1"),
        ]
    )
    state.carts[0].progress["cart_abandonment"] = [at(hours=3), 1]
    row = orjson.loads(orjson.dumps(state.to_dict()))
    assert row["su"] == at() and row["fs"] == at(hours=1)
    assert row["vw"] == [at(hours=2), at(hours=2), [[at(hours=2), "p1"]]]
    assert row["ct"] == [
        [
            "c1",
            at(hours=3),
            CART_CHECKOUT,
            [["p1", 1, "19.90", "EUR"]],
            at(hours=4),
            at(hours=4),
            {"cart_abandonment": [at(hours=3), 1]},
        ]
    ]
    assert row["fc"] == [at(hours=3), at(hours=3)]
    assert row["ol"][0][0] == at(hours=4) and len(row["ol"][0][1]) == 16
    again = CustomerState.from_dict(row)
    assert again == state
    assert orjson.dumps(again.to_dict()) == orjson.dumps(state.to_dict())


def test_a_row_from_before_the_lifecycle_loads_without_its_facts() -> None:
    old = fold([session(CID, at()), purchase(CID, at(days=1), "ORD-1")]).to_dict()
    for key in ("fs", "ol"):
        del old[key]
    state = CustomerState.from_dict(orjson.loads(orjson.dumps(old)))
    assert (state.orders, state.order_log, state.first_session_at, state.carts) == (1, [], None, [])
    assert state.to_dict() == old
