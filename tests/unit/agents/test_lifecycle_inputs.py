"""The lifecycle's inputs through ingest and the customer agent (docs/lifecycle.md
"Inputs"): each contract's bad messages are dead letters on its own topic; good ones
reach the engine by the internal topic and the pending queue in their compact form.

Until the new kinds are folded (docs/lifecycle.md "Facts"), an event of a new kind
reaching the engine is harmless: with the default rules it changes no decision.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from agents.contract import CUSTOMER_KEY_PREFIX
from agents.core.budget import MAX_ENTRY_BYTES, entry_size
from agents.core.clock import ManualClock
from agents.core.settings import DAY
from agents.core.state import (
    CustomerState,
    order_product_keys,
    pending_entry,
    pending_event,
    product_key,
)
from agents.core.timeutil import iso
from agents.core.validation import validate
from schemas.records import Event
from streams.config import Topics
from tests.unit.agents.factories import T0, DictStore, processors

TOPICS = Topics()
NOW = T0 + 60 * DAY
CUSTOMER = "cus_000481"
LINE: dict[str, Any] = {
    "product_id": "SKU-1",
    "quantity": 1,
    "unit_price": "89.00",
    "currency": "EUR",
}


def message(schema: str, n: int, days: float, **fields: Any) -> dict[str, Any]:
    return {
        "schema": schema,
        "event_id": f"evt-{n}",
        "customer_id": CUSTOMER,
        "occurred_at": iso(T0 + int(days * DAY)),
        **fields,
    }


ORDER = message("purchase/1", 1, 0, order_id="ORD-1", amount="89.00", currency="EUR")
# One of each new contract, on its own topic, around the customer's first order.
LIFECYCLE = [
    (TOPICS.signups, message("signup/1", 2, -1, timezone="Europe/Berlin")),
    (TOPICS.product_views, message("product_view/1", 3, -0.5, product_id="SKU-1")),
    (
        TOPICS.product_views,
        message("product_view/1", 4, 3, product_id="SKU-2", price=5, currency="EUR"),
    ),
    (TOPICS.carts, message("cart/1", 5, -0.1, cart_id="k1", action="updated", items=[LINE])),
    (TOPICS.carts, message("cart/1", 6, 4, cart_id="k2", action="checkout_started", items=[LINE])),
    (TOPICS.carts, message("cart/1", 7, 5, cart_id="k2", action="emptied", items=[])),
    (
        TOPICS.order_cancellations,
        message(
            "order_cancelled/1", 8, 2, order_id="ORD-X", scope="full", amount=1, currency="EUR"
        ),
    ),
]


def decisions_and_letters(inputs: list[tuple[str, dict[str, Any]]]) -> tuple[list[Any], list[Any]]:
    """Every message through ingest and the customer agent (stream clock), then the
    clock advanced 40 days on every input partition: the decisions and dead letters."""
    procs = processors(ManualClock(NOW), partitions=1)
    store = DictStore()
    out: list[tuple[str, dict[str, Any]]] = []
    internal: list[bytes] = []
    for offset, (topic, obj) in enumerate(inputs):
        outputs, _ = procs.ingest.handle(orjson.dumps(obj), topic, 0, offset)
        out += [(o.topic, orjson.loads(o.value)) for o in outputs if o.topic == TOPICS.dlq]
        internal += [o.value for o in outputs if o.topic == TOPICS.customer_events]
    advance = orjson.dumps({"schema": "control/advance", "until": iso(T0 + 40 * DAY)})
    for topic in TOPICS.inputs():
        internal += [payload for _, payload in procs.ingest.handle(advance, topic, 0, 99)[1]]
    for raw in internal:
        result = procs.customer.handle(0, raw, store)
        store.data.update(result.writes)
        out += [(o.topic, orjson.loads(o.value)) for o in result.outputs]
    found = [(d["rule"], d["step"], d["due_at"]) for t, d in out if t == TOPICS.decisions]
    letters = [d for t, d in out if t == TOPICS.dlq]
    if CUSTOMER_KEY_PREFIX + CUSTOMER in store.data:
        state = CustomerState.from_dict(orjson.loads(store.data[CUSTOMER_KEY_PREFIX + CUSTOMER]))
        assert state.pending_count() == 0  # every event was applied
    return found, letters


def test_new_kinds_reach_the_engine_and_change_no_decision_of_the_default_rules() -> None:
    alone, letters = decisions_and_letters([(TOPICS.purchases, ORDER)])
    assert alone and not letters  # second_purchase and inactivity fire
    with_lifecycle, letters = decisions_and_letters([(TOPICS.purchases, ORDER), *LIFECYCLE])
    assert letters == []  # none refused on the way (ingest, internal topic, pending)
    assert with_lifecycle == alone
    # The order as purchase/2, with its cart and lines: the same order, the same decisions.
    order_2 = ORDER | {"schema": "purchase/2", "cart_id": "k1", "items": [LINE]}
    assert decisions_and_letters([(TOPICS.purchases, order_2), *LIFECYCLE]) == (alone, [])


BAD = [
    (TOPICS.signups, message("signup/1", 20, 0) | {"customer_id": ""}, "invalid_field"),
    (TOPICS.product_views, message("product_view/1", 21, 0), "missing_field"),
    (
        TOPICS.carts,
        message("cart/1", 22, 0, cart_id="k", action="updated", items=[LINE] * 11),
        "invalid_field",
    ),
    (
        TOPICS.carts,
        message("cart/1", 23, 0, cart_id="k", action="updated", items=[LINE | {"quantity": 0}]),
        "invalid_field",
    ),
    (
        TOPICS.order_cancellations,
        message("order_cancelled/1", 24, 0, order_id="o", scope="all", amount=1, currency="EUR"),
        "invalid_field",
    ),
    (
        TOPICS.purchases,
        ORDER | {"schema": "purchase/2", "items": [LINE | {"currency": "eur"}]},
        "invalid_field",
    ),
]


@pytest.mark.parametrize(("topic", "obj", "code"), BAD, ids=[b[1]["schema"] for b in BAD])
def test_a_bad_lifecycle_message_is_a_dead_letter_naming_its_topic_and_fault(
    topic: str, obj: dict[str, Any], code: str
) -> None:
    outputs, _ = processors(ManualClock(NOW)).ingest.handle(orjson.dumps(obj), topic, 2, 7)
    [(letter_topic, key, record)] = [(o.topic, o.key, orjson.loads(o.value)) for o in outputs]
    assert (letter_topic, key) == (TOPICS.dlq, f"{topic}:2:7")
    assert record["error_code"] == code
    assert record["source"] == {"topic": topic, "partition": 2, "offset": 7}


def _event(obj: dict[str, Any]) -> Event:
    return validate(orjson.dumps(obj), now=NOW, max_bytes=1 << 20, future_tolerance=DAY)


def test_pending_entries_keep_what_the_facts_need_and_read_back() -> None:
    view = _event(LIFECYCLE[2][1] | {"category": "shoes", "channel": "web"})
    assert pending_entry(view) == {
        "k": "product_view",
        "e": "evt-4",
        "t": view.occurred_at,
        "p": "SKU-2",
    }
    cart = _event(LIFECYCLE[3][1])
    assert pending_event(CUSTOMER, pending_entry(cart)) == cart
    cancel = _event(LIFECYCLE[6][1])
    assert pending_event(CUSTOMER, pending_entry(cancel)) == cancel
    signup = _event(LIFECYCLE[0][1])
    assert set(pending_entry(signup)) == {"k", "e", "t", "tz"}
    order = _event(
        ORDER
        | {"schema": "purchase/2", "cart_id": "k1", "items": [LINE, LINE | {"product_id": "SKU-9"}]}
    )
    entry = pending_entry(order)
    assert entry["cart"] == "k1" and entry["ip"] == [product_key("SKU-1"), product_key("SKU-9")]
    assert "it" not in entry
    back = pending_event(CUSTOMER, entry)
    assert (back.order_id, back.amount, back.cart_id) == ("ORD-1", "89.00", "k1")
    assert (
        order_product_keys(back)
        == order_product_keys(order)
        == {product_key("SKU-1"), product_key("SKU-9")}
    )


WIDE = "\x01" * 128
WIDE_LINE = {
    "product_id": WIDE,
    "quantity": 1_000_000,
    "unit_price": "9" * 16 + "." + "9" * 15,
    "currency": "EUR",
}


@pytest.mark.parametrize(
    "obj",
    [
        message("cart/1", 30, 0, cart_id=WIDE, action="checkout_started", items=[WIDE_LINE] * 10),
        message(
            "purchase/2",
            31,
            0,
            order_id=WIDE,
            amount=1,
            currency="EUR",
            cart_id=WIDE,
            items=[WIDE_LINE] * 50,
        ),
        message(
            "order_cancelled/1", 32, 0, order_id=WIDE, scope="partial", amount=1e15, currency="EUR"
        ),
        message("product_view/1", 33, 0, product_id=WIDE, category=WIDE, price=1, currency="EUR"),
    ],
    ids=["cart", "purchase_2", "cancellation", "view"],
)
def test_the_widest_pending_entry_of_each_kind_is_within_the_budgets_bound(
    obj: dict[str, Any],
) -> None:
    wide = obj | {"event_id": WIDE, "customer_id": WIDE, "timezone": "~" * 80}
    assert entry_size(pending_entry(_event(wide))) <= MAX_ENTRY_BYTES


@pytest.mark.parametrize(
    "extra",
    [
        {"cart_id": "k1", "items": [LINE]},
        {"cart_id": "", "items": [{"sku": "A1"}] * 60},  # what purchase/2 would refuse
        {"cart_id": None, "items": "several"},
    ],
)
def test_a_purchase_1_with_cart_fields_is_read_exactly_as_before(extra: dict[str, Any]) -> None:
    # docs/lifecycle.md "Inputs": purchase/1 is unchanged, its extra fields ignored.
    plain = _event(ORDER)
    assert _event(ORDER | extra) == plain
    assert plain.to_wire() == {
        "k": "purchase",
        "e": "evt-1",
        "c": CUSTOMER,
        "t": T0,
        "o": "ORD-1",
        "a": "89.00",
        "cur": "EUR",
    }
    assert pending_entry(plain) == {
        "k": "purchase",
        "e": "evt-1",
        "t": T0,
        "o": "ORD-1",
        "a": "89.00",
        "cur": "EUR",
    }


def test_an_order_back_from_pending_matches_a_carts_products_as_the_order_itself() -> None:
    # The any_product exit reads the order's product keys (docs/lifecycle.md "Inputs").
    cart = _event(LIFECYCLE[3][1])  # cart k1 holds SKU-1
    other = LINE | {"product_id": "SKU-7"}
    for lines, matched in (([other, LINE], True), ([other], False)):
        order = _event(ORDER | {"schema": "purchase/2", "items": lines})
        rows = []
        for applied in (order, pending_event(CUSTOMER, pending_entry(order))):
            state = CustomerState(customer_id=CUSTOMER, partition=0)
            state.apply(cart)
            state.apply(applied)
            rows.append(state.to_dict())
        assert rows[0] == rows[1]
        (kept,) = CustomerState.from_dict(rows[0]).carts
        assert (kept.matched_at == order.occurred_at) is matched
