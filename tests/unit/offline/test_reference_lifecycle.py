"""The offline reference alone on the lifecycle (docs/lifecycle.md, issue 24): the
named cases of the keyed cart ladder and of cancellations, read from a JSONL file as
``retention report --from-file`` reads it, with ``lifecycle.toml``'s rules.

Each case says what a shop would see: which nudges go out and when, with which
trigger id and context, and what the customer's order facts are afterwards.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import orjson

from agents.core.settings import DAY, HOUR, CoreSettings
from agents.core.timeutil import iso, to_micros
from agents.offline.lifecycle import trigger_id
from agents.offline.reference import ReferenceResult, compute_decisions
from agents.offline.timeline import years_later

T0 = to_micros(datetime(2026, 3, 2, 10, 0, tzinfo=UTC))
NOW = T0 + 3000 * DAY
CID = "cus_life"
_serial = itertools.count()

RULES = """\
format = 1

[guardrails]
holdout_percent = 0.0
min_gap = "PT1M"
frequency_cap = 10
frequency_window = "P1D"
attribution_window = "P1D"

[[rule]]
name = "welcome"
priority = 5
anchor = "signup"
steps = ["PT24H", "PT72H"]

[[rule]]
name = "browse_abandonment"
priority = 6
anchor = "last_view"
cancel_on = ["purchase"]
steps = ["PT4H", "P1D"]

[[rule]]
name = "cart_abandonment"
priority = 4
anchor = "cart"
steps = ["PT1H", "PT24H"]

[[rule]]
name = "order_milestone"
priority = 40
anchor = "first_order"
steps = [{ order = 2 }, { order = 3 }]

[[rule]]
name = "anniversary"
priority = 45
anchor = "first_order"
steps = [{ anniversary = 1 }]
"""


def line(schema: str, t: int, **fields: Any) -> bytes:
    head = {"schema": schema, "event_id": f"e{next(_serial):04d}", "customer_id": CID}
    return orjson.dumps(head | {"occurred_at": iso(t)} | fields)


def cart(
    t: int, cart_id: str, action: str = "updated", products: tuple[str, ...] = ("p1",)
) -> bytes:
    items = [
        {"product_id": p, "quantity": 2, "unit_price": "9.50", "currency": "EUR"} for p in products
    ]
    return line("cart/1", t, cart_id=cart_id, action=action, items=items)


def order(
    t: int,
    order_id: str,
    cart_id: str | None = None,
    products: tuple[str, ...] = (),
    amount: str = "20.00",
) -> bytes:
    extra: dict[str, Any] = {}
    if cart_id is not None:
        extra["cart_id"] = cart_id
    if products:
        extra["items"] = [
            {"product_id": p, "quantity": 1, "unit_price": amount, "currency": "EUR"}
            for p in products
        ]
    schema = "purchase/2" if extra else "purchase/1"
    return line(schema, t, order_id=order_id, amount=amount, currency="EUR", **extra)


def cancel(t: int, order_id: str, scope: str = "full", amount: str = "20.00") -> bytes:
    return line(
        "order_cancelled/1", t, order_id=order_id, scope=scope, amount=amount, currency="EUR"
    )


def run(lines: list[bytes], until: int) -> ReferenceResult:
    return compute_decisions(lines, CoreSettings(), rules=RULES, until=until, now=NOW)


def sent(result: ReferenceResult, rule: str) -> list[tuple[int, str, str | None]]:
    """(step, due_at, the cart id of its context) of each of ``rule``'s decisions."""
    return [
        (d["step"], d["due_at"], d.get("context", {}).get("cart", {}).get("cart_id"))
        for d in result.decisions
        if d["rule"] == rule
    ]


# --- the keyed cart ladder -------------------------------------------------------------


def test_an_order_of_another_cart_does_not_end_the_cart_ladder() -> None:
    result = run(
        [
            cart(T0, "A"),
            cart(T0 + 10, "B", products=("p2",)),
            order(T0 + 30 * 60 * 10**6, "o1", "B"),
        ],
        T0 + 2 * DAY,
    )
    # A's ladder goes on (both steps); B's ended with its own order half an hour in.
    assert sent(result, "cart_abandonment") == [
        (1, iso(T0 + HOUR), "A"),
        (2, iso(T0 + 24 * HOUR), "A"),
    ]


def test_an_order_of_another_cart_sharing_a_product_ends_it_with_exit_any_product() -> None:
    rules = RULES.replace('anchor = "cart"', 'anchor = { kind = "cart", exit = "any_product" }')
    lines = [cart(T0, "A", products=("p1",)), order(T0 + 10, "o1", "B", products=("p1",))]
    result = compute_decisions(lines, CoreSettings(), rules=rules, until=T0 + 2 * DAY, now=NOW)
    assert sent(result, "cart_abandonment") == []
    # With the default exit the same order leaves cart A's ladder going.
    assert len(sent(run(lines, T0 + 2 * DAY), "cart_abandonment")) == 2


def test_emptying_the_cart_ends_its_ladder_and_a_new_snapshot_restarts_it() -> None:
    lines = [cart(T0, "A"), cart(T0 + 2 * HOUR, "A", action="emptied", products=())]
    assert sent(run(lines, T0 + 2 * DAY), "cart_abandonment") == [(1, iso(T0 + HOUR), "A")]
    lines.append(cart(T0 + 3 * DAY, "A", products=("p3",)))
    assert sent(run(lines, T0 + 5 * DAY), "cart_abandonment") == [
        (1, iso(T0 + HOUR), "A"),
        (1, iso(T0 + 3 * DAY + HOUR), "A"),
        (2, iso(T0 + 4 * DAY), "A"),
    ]


def test_two_carts_updated_at_one_instant_get_distinct_trigger_ids_by_cart_id() -> None:
    result = run([cart(T0, "cart-b"), cart(T0, "cart-a", products=("p2",))], T0 + 2 * HOUR)
    decisions = [d for d in result.decisions if d["rule"] == "cart_abandonment"]
    assert [d["context"]["cart"]["cart_id"] for d in decisions] == ["cart-a", "cart-b"]
    ids = [d["trigger_id"] for d in decisions]
    assert len(set(ids)) == 2
    assert ids[0] == trigger_id(CID, "cart_abandonment", 1, T0, "cart-a")
    # The cart's items and value as the nudge carries them.
    assert decisions[0]["context"]["cart"] == {
        "cart_id": "cart-a",
        "action": "updated",
        "items": [{"product_id": "p2", "quantity": 2, "unit_price": "9.50", "currency": "EUR"}],
        "value": {"EUR": "19.00"},
    }


def test_an_unkeyed_trigger_id_is_todays() -> None:
    from agents.core import ids

    assert trigger_id(CID, "welcome", 1, T0, None) == ids.trigger_id(CID, "welcome", 1, T0)


def test_browse_names_the_newest_viewed_products_and_an_order_after_the_view_ends_it() -> None:
    views = [line("product_view/1", T0 + i, product_id=f"p{i}") for i in range(7)]
    result = run(views, T0 + 5 * HOUR)
    (d,) = [d for d in result.decisions if d["rule"] == "browse_abandonment"]
    assert d["context"] == {"products": ["p6", "p5", "p4", "p3", "p2"]}
    ended = run([*views, order(T0 + HOUR, "o1")], T0 + 2 * DAY)
    assert sent(ended, "browse_abandonment") == []


def test_welcome_ends_with_the_first_order_and_comes_back_when_it_is_cancelled() -> None:
    lines = [line("signup/1", T0), order(T0 + 2 * DAY, "o1")]
    assert sent(run(lines, T0 + 5 * DAY), "welcome") == [(1, iso(T0 + DAY), None)]
    lines.append(cancel(T0 + 4 * DAY, "o1"))
    # Step 2 was due at 72 h, when the customer had an order; at the cancellation
    # the customer has none again: it is due then.
    assert sent(run(lines, T0 + 5 * DAY), "welcome") == [
        (1, iso(T0 + DAY), None),
        (2, iso(T0 + 4 * DAY), None),
    ]


# --- cancellations -------------------------------------------------------------------


def facts(result: ReferenceResult) -> tuple[int, int | None, int | None, str]:
    """(orders, first order, second order, spend in EUR) as the report reads them."""
    (row,) = result.rows
    return row.orders, row.first_order_at, row.second_order_at, row.spend.get("EUR", "")


def test_a_cancellation_after_its_order_takes_effect_at_its_own_time() -> None:
    lines = [order(T0, "o1"), order(T0 + DAY, "o2", amount="5.00"), cancel(T0 + 2 * DAY, "o2")]
    before = run(lines, T0 + DAY + HOUR)
    assert facts(before) == (2, T0, T0 + DAY, "25.00")
    after = run(lines, T0 + 3 * DAY)
    assert facts(after) == (1, T0, None, "20.00")
    # The 2nd-order milestone fired when the order came and stays fired.
    assert sent(after, "order_milestone") == [(1, iso(T0 + DAY), None)]


def test_a_cancellation_before_its_order_waits_and_the_order_never_counts() -> None:
    lines = [cancel(T0, "o1"), order(T0 + DAY, "o1"), order(T0 + 2 * DAY, "o2")]
    result = run(lines, T0 + 3 * DAY)
    assert facts(result) == (1, T0 + 2 * DAY, None, "20.00")
    history = result.facts[CID].history
    assert history is not None
    waiting = history.orders(T0 + HOUR)
    assert len(waiting.pending) == 1 and waiting.count == 0
    done = history.orders(T0 + 3 * DAY)
    assert (done.cancelled, done.pending) == (1, ())
    assert sent(result, "order_milestone") == []  # never two orders at once


def test_cancelling_the_first_order_makes_the_second_the_first() -> None:
    lines = [order(T0, "o1"), order(T0 + DAY, "o2"), order(T0 + 2 * DAY, "o3")]
    lines.append(cancel(T0 + 3 * DAY, "o1"))
    result = run(lines, T0 + 4 * DAY)
    assert facts(result) == (2, T0 + DAY, T0 + 2 * DAY, "40.00")
    # The first_order anchor moved: the milestone ladder restarts on the new first
    # order, its 2nd order (o3) already passed: due at the cancellation.
    assert sent(result, "order_milestone") == [
        (1, iso(T0 + DAY), None),
        (2, iso(T0 + 2 * DAY), None),
        (1, iso(T0 + 3 * DAY), None),
    ]


def test_cancelling_the_second_order_leaves_the_first_and_the_third_becomes_second() -> None:
    lines = [order(T0, "o1"), order(T0 + DAY, "o2"), order(T0 + 2 * DAY, "o3")]
    lines.append(cancel(T0 + 3 * DAY, "o2", amount="20.00"))
    assert facts(run(lines, T0 + 4 * DAY)) == (2, T0, T0 + 2 * DAY, "40.00")


def test_a_partial_cancellation_lowers_spend_and_keeps_the_order() -> None:
    lines = [order(T0, "o1"), cancel(T0 + DAY, "o1", scope="partial", amount="7.50")]
    result = run(lines, T0 + 2 * DAY)
    assert facts(result) == (1, T0, None, "12.50")
    history = result.facts[CID].history
    assert history is not None
    o = history.orders()
    assert (o.partial, o.cancelled, dict(o.refunded)) == (1, 0, {"EUR": 7.5})


def test_cancelling_a_middle_order_of_more_than_35_adjusts_counts_and_spend_only() -> None:
    lines = [order(T0 + i * HOUR, f"o{i}") for i in range(40)]
    lines.append(cancel(T0 + 2 * DAY, "o5", amount="20.00"))
    result = run(lines, T0 + 3 * DAY)
    history = result.facts[CID].history
    assert history is not None
    o = history.orders()
    # o5 is neither among the first 3 nor the newest 32: not in the log.
    assert len(o.log) == 35 and o.count == 39
    assert facts(result) == (39, T0, T0 + HOUR, "780.00")
    assert o.last == T0 + 39 * HOUR
    # Cancelling a logged one (the newest) re-reads the last order from the log.
    lines.append(cancel(T0 + 2 * DAY + 1, "o39"))
    o = run(lines, T0 + 3 * DAY).facts[CID].history.orders()  # type: ignore[union-attr]
    assert (o.count, o.last) == (38, T0 + 38 * HOUR)


def test_a_second_cancellation_of_one_order_changes_nothing() -> None:
    lines = [order(T0, "o1"), order(T0 + DAY, "o2"), cancel(T0 + 2 * DAY, "o1")]
    once = facts(run(lines, T0 + 3 * DAY))
    lines.append(cancel(T0 + 2 * DAY + 1, "o1"))
    assert facts(run(lines, T0 + 3 * DAY)) == once == (1, T0 + DAY, None, "20.00")


def test_the_stage_goes_back_to_prospect_when_the_only_order_is_cancelled() -> None:
    lines = [order(T0, "o1"), cancel(T0 + DAY, "o1")]
    (row,) = run(lines, T0 + 2 * DAY).rows
    assert (row.orders, row.stage) == (0, "prospect")
    # Activity is not undone: the retention spans keep the placed order.
    assert row.active_spans


def test_anniversaries_of_29_february_fall_on_28_february() -> None:
    first = to_micros(datetime(2028, 2, 29, 12, 0, tzinfo=UTC))
    assert iso(years_later(first, 1)) == "2029-02-28T12:00:00Z"
    assert iso(years_later(first, 4)) == "2032-02-29T12:00:00Z"
    result = compute_decisions(
        [order(first, "o1")],
        CoreSettings(),
        rules=RULES,
        until=first + 400 * DAY,
        now=first + 3000 * DAY,
    )
    (d,) = [d for d in result.decisions if d["rule"] == "anniversary"]
    assert d["due_at"] == "2029-02-28T12:00:00Z"
    assert d["context"] == {"milestone": {"years": 1}}


def test_the_reference_keeps_recovered_revenue_in_two_currencies_and_xxx() -> None:
    # docs/reports.md "Recovered revenue": per rule and group the 2 alphabetically
    # smallest codes keep their sums, the rest (and XXX itself) go to XXX, as the
    # engine's row does (agents/core/state.py add_recovered).
    from agents.offline.judgment import Conversion, Firing
    from agents.offline.reference import _recovered

    firing = Firing("c1", "cart_abandonment", 10, 1, 3600, 0, 3600)
    converted = [
        Conversion(firing, "delivered", 7200, f"o{i}", amount, code)
        for i, (amount, code) in enumerate(
            [("1.5", "USD"), ("2", "EUR"), ("0.25", "AUD"), ("3", "XXX"), ("1", "EUR")]
        )
    ]
    converted.append(Conversion(firing, "delivered", 7200, "o9", "5", "GBP"))
    got = _recovered(converted, frozenset({"cart_abandonment"}))
    assert got == {
        "c1": {"cart_abandonment": {"delivered": {"AUD": "0.25", "EUR": "3", "XXX": "9.5"}}}
    }
    assert _recovered(converted, frozenset({"browse_abandonment"})) == {}
