"""The internal topic's format (agents.wire): what ingest and the leader write, the
customer processor reads back unchanged (docs/design.md "The batched hot path")."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest

from agents.core.validation import validate
from agents.wire import (
    CODE_INTERNAL,
    BadMessage,
    advance_message,
    bundle_items,
    bundles,
    event_message,
    read_wire_event,
    tick_message,
)
from schemas.records import KIND_PURCHASE, Event, Item
from tests.unit.agents.factories import T0

FAR = 2**62  # no future_timestamp bound

PURCHASE = Event(
    KIND_PURCHASE, "e1", "cus_1", T0, order_id="o1", amount="12.50", currency="EUR", channel="web"
)


def test_an_event_written_by_ingest_reads_back_as_the_same_event() -> None:
    msg = orjson.loads(event_message("retention.purchases:0", PURCHASE))
    assert msg["type"] == "ev" and msg["src"] == "retention.purchases:0"
    assert read_wire_event(msg["ev"], latest=T0) == PURCHASE


def test_advances_and_ticks_say_where_the_clock_goes() -> None:
    adv = orjson.loads(advance_message("retention.sessions:1", T0))
    assert adv == {"type": "adv", "src": "retention.sessions:1", "until": T0}
    assert orjson.loads(tick_message(T0)) == {"type": "tick", "now": T0}


def test_bundles_carry_every_message_in_order_within_the_size() -> None:
    items = [event_message(f"retention.purchases:{i % 3}", PURCHASE) for i in range(40)]
    records = bundles(items, max_bytes=1000)
    assert len(records) > 1 and all(len(r) <= 1000 + len(items[0]) for r in records)
    read = [x for r in records for x in bundle_items(orjson.loads(r))]
    assert read == [orjson.loads(x) for x in items]


def test_a_bundle_without_items_and_a_malformed_event_are_dead_letters() -> None:
    with pytest.raises(BadMessage) as bad:
        bundle_items({"type": "bundle"})
    assert bad.value.code == CODE_INTERNAL
    wire = orjson.loads(event_message("retention.purchases:0", PURCHASE))["ev"]
    with pytest.raises(BadMessage, match="purchase amount or currency malformed"):
        read_wire_event({**wire, "a": "12,50"}, latest=T0)


def test_a_zone_rides_the_event_and_an_event_without_one_is_written_as_before() -> None:
    # docs/send-windows.md "The customer's zone": short keys, left out when absent.
    plain = event_message("retention.purchases:0", PURCHASE)
    assert b"tz" not in plain
    assert plain == orjson.dumps(
        {
            "type": "ev",
            "src": "retention.purchases:0",
            "ev": {
                "k": "purchase",
                "e": "e1",
                "c": "cus_1",
                "t": T0,
                "o": "o1",
                "a": "12.50",
                "cur": "EUR",
                "ch": "web",
            },
        }
    )
    for event in (
        dataclasses.replace(PURCHASE, timezone="Asia/Kathmandu"),
        dataclasses.replace(PURCHASE, timezone_ignored="Mars/Olympus_Mons"),
    ):
        wire = orjson.loads(event_message("retention.purchases:0", event))["ev"]
        assert read_wire_event(wire, latest=T0) == event


@pytest.mark.parametrize(
    "bad",
    [
        {"tz": "Mars/Olympus_Mons"},
        {"tz": "europe/berlin"},
        {"tz": "Factory"},
        {"tz": 3600},
        {"tzx": "x" * 65},
        {"tzx": "Asia/\u00e9"},
        {"tzx": 'say "hi"'},
        {"tzx": ["Europe/Berlin"]},
    ],
)
def test_a_zone_the_reader_would_not_have_written_is_a_dead_letter(bad: dict[str, Any]) -> None:
    wire = orjson.loads(event_message("retention.purchases:0", PURCHASE))["ev"]
    with pytest.raises(BadMessage, match="timezone") as caught:
        read_wire_event(wire | bad, latest=T0)
    assert caught.value.code == CODE_INTERNAL


# --- the lifecycle's inputs (docs/lifecycle.md "Inputs") -------------------------------

_LINE: dict[str, Any] = {
    "product_id": "SKU-1",
    "quantity": 2,
    "unit_price": 19.9,
    "currency": "EUR",
}
_COMMON: dict[str, Any] = {
    "event_id": "e9",
    "customer_id": "cus_1",
    "occurred_at": "2026-03-02T10:00:00Z",
}
LIFECYCLE: dict[str, dict[str, Any]] = {
    "signup": {"schema": "signup/1", **_COMMON, "timezone": "Europe/Berlin"},
    "view": {"schema": "product_view/1", **_COMMON, "product_id": "SKU-1"},
    "priced_view": {
        "schema": "product_view/1",
        **_COMMON,
        "product_id": "SKU-1",
        "category": "shoes",
        "price": "89.00",
        "currency": "EUR",
    },
    "cart": {"schema": "cart/1", **_COMMON, "cart_id": "k1", "action": "updated", "items": [_LINE]},
    "emptied": {"schema": "cart/1", **_COMMON, "cart_id": "k1", "action": "emptied", "items": []},
    "cancel": {
        "schema": "order_cancelled/1",
        **_COMMON,
        "order_id": "o1",
        "scope": "partial",
        "amount": 5,
        "currency": "EUR",
    },
    "purchase_2": {
        "schema": "purchase/2",
        **_COMMON,
        "order_id": "o2",
        "amount": "39.80",
        "currency": "EUR",
        "cart_id": "k1",
        "items": [_LINE] * 3,
    },
}


def _validated(message: dict[str, Any]) -> Event:
    return validate(orjson.dumps(message), now=FAR, max_bytes=1 << 20, future_tolerance=0)


@pytest.mark.parametrize("message", LIFECYCLE.values(), ids=LIFECYCLE.keys())
def test_every_lifecycle_event_reads_back_as_ingest_validated_it(message: dict[str, Any]) -> None:
    event = _validated(message)
    wire = orjson.loads(event_message("retention.carts:1", event))["ev"]
    assert read_wire_event(wire, latest=FAR) == event
    if event.items:  # numbers became exact decimal strings, quantities ints
        assert event.items[0] == Item("SKU-1", 2, "19.9", "EUR")


def test_a_purchase_2_keeps_its_cart_and_lines_and_a_purchase_1_is_written_as_before() -> None:
    event = _validated(LIFECYCLE["purchase_2"])
    assert (event.cart_id, len(event.items or ())) == ("k1", 3)
    old = _validated(LIFECYCLE["purchase_2"] | {"schema": "purchase/1"})
    assert (old.cart_id, old.items) == (None, None)
    assert set(old.to_wire()) == {"k", "e", "c", "t", "o", "a", "cur"}


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("signup", {"k": "signups"}),
        ("view", {"p": ""}),
        ("view", {"p": 7}),
        ("priced_view", {"cat": ""}),
        ("priced_view", {"pr": "1e3"}),
        ("priced_view", {"cur": None}),
        ("cart", {"act": "abandoned"}),
        ("cart", {"it": [["SKU-1", 0, "1", "EUR"]]}),
        ("cart", {"it": [["SKU-1", 1, "1", "EUR"]] * 11}),
        ("cart", {"it": [["SKU-1", True, "1", "EUR"]]}),
        ("cart", {"it": [["SKU-1", 1, "-1", "EUR"]]}),
        ("cart", {"it": [{"product_id": "SKU-1"}]}),
        ("cart", {"it": []}),
        ("emptied", {"it": [["SKU-1", 1, "1", "EUR"]]}),
        ("cancel", {"act": "refund"}),
        ("cancel", {"a": "-5"}),
        ("purchase_2", {"cart": " "}),
        ("purchase_2", {"it": [["SKU-1", 1, "1", "EUR"]] * 51}),
        ("purchase_2", {"it": "SKU-1"}),
    ],
)
def test_a_lifecycle_event_ingest_would_not_have_written_is_a_dead_letter(
    name: str, bad: dict[str, Any]
) -> None:
    wire = orjson.loads(event_message("retention.carts:0", _validated(LIFECYCLE[name])))["ev"]
    with pytest.raises(BadMessage) as caught:
        read_wire_event(wire | bad, latest=FAR)
    assert caught.value.code == CODE_INTERNAL
