"""The engine on the lifecycle's rules (docs/lifecycle.md "Rules"): the welcome,
browse and keyed cart ladders and the order milestones, as a shop running
``lifecycle.toml`` sees them."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from agents.core.emissions import Conversion, Emission, Firing
from agents.core.engine import Engine
from agents.core.ids import trigger_id
from agents.core.rules import builtin_text, load_rules
from agents.core.settings import CoreSettings
from agents.core.state import CustomerState
from agents.core.timeutil import to_micros
from schemas.records import (
    KIND_CANCEL,
    KIND_CART,
    KIND_PURCHASE,
    KIND_SESSION,
    KIND_SIGNUP,
    KIND_VIEW,
    Event,
    Item,
)
from tests.unit.agents.factories import T0, at

CID = "cus_life"
_serial = itertools.count()


def engine(extra: str = "") -> Engine:
    """lifecycle.toml without a control group (every firing delivered unless a
    guardrail says otherwise), ``extra`` replacing a rule's text."""
    text = builtin_text("lifecycle").replace(
        "[guardrails]\nholdout_percent = 10.0", "[guardrails]\nholdout_percent = 0"
    )
    if extra:
        text = text.replace('anchor = "cart"\n', extra)
    return Engine(CoreSettings(rules=load_rules(text)))


def ev(kind: str, t: int, **fields: object) -> Event:
    return Event(kind, f"e{next(_serial)}", CID, t, **fields)  # type: ignore[arg-type]


def cart(
    t: int, cart_id: str, action: str = "updated", products: tuple[str, ...] = ("p1",)
) -> Event:
    items = tuple(Item(p, 2, "9.50", "EUR") for p in products)
    return ev(KIND_CART, t, cart_id=cart_id, action=action, items=items)


def order(
    t: int, cart_id: str | None = None, products: tuple[str, ...] = (), order_id: str | None = None
) -> Event:
    items = tuple(Item(p, 1, "5", "EUR") for p in products) or None
    return ev(
        KIND_PURCHASE,
        t,
        order_id=order_id or f"o{next(_serial)}",
        amount="20.00",
        currency="EUR",
        cart_id=cart_id,
        items=items,
    )


def run(eng: Engine, events: list[Event], until: int) -> list[Emission]:
    """Each event taken in when the clock reaches it, then the clock to ``until``."""
    state = CustomerState(customer_id=CID, partition=0)
    out: list[Emission] = []
    for e in sorted(events, key=lambda e: e.occurred_at):
        got = eng.ingest(state, e, e.occurred_at)
        assert isinstance(got, list)
        out += got
    return out + eng.advance(state, until)


def firings(out: list[Emission], rule: str) -> list[Firing]:
    return [e for e in out if isinstance(e, Firing) and e.rule == rule]


def test_an_order_of_another_cart_does_not_end_the_cart_ladder() -> None:
    out = run(engine(), [cart(T0, "A"), order(at(hours=0.5), "B", ("p9",))], at(days=3))
    got = firings(out, "cart_abandonment")
    assert [(f.step, f.due_at, f.key, f.outcome) for f in got] == [
        (1, at(hours=1), "A", "delivered"),
        (2, at(hours=24), "A", "min_gap"),
    ]


def test_an_order_of_the_cart_or_emptying_it_ends_the_ladder() -> None:
    ordered = run(engine(), [cart(T0, "A"), order(at(hours=0.5), "A")], at(days=3))
    emptied = run(engine(), [cart(T0, "A"), cart(at(hours=0.5), "A", "emptied", ())], at(days=3))
    assert firings(ordered, "cart_abandonment") == []
    assert firings(emptied, "cart_abandonment") == []


def test_an_order_sharing_a_product_ends_it_only_with_exit_any_product() -> None:
    events = [cart(T0, "A", products=("p1", "p2")), order(at(hours=0.5), None, ("p2",))]
    keep = run(engine(), events, at(hours=2))
    end = run(engine('anchor = { kind = "cart", exit = "any_product" }\n'), events, at(hours=2))
    assert [f.key for f in firings(keep, "cart_abandonment")] == ["A"]
    assert firings(end, "cart_abandonment") == []


def test_two_carts_updated_at_the_same_instant_get_distinct_trigger_ids() -> None:
    out = run(engine(), [cart(T0, "B"), cart(T0, "A")], at(hours=2))
    got = firings(out, "cart_abandonment")
    # Same rule, step and anchor: cart id ascending, one delivered (the gap holds the other).
    assert [(f.key, f.due_at, f.outcome) for f in got] == [
        ("A", at(hours=1), "delivered"),
        ("B", at(hours=1), "min_gap"),
    ]
    ids = {f.trigger_id for f in got}
    assert len(ids) == 2
    assert got[0].trigger_id == trigger_id(CID, "cart_abandonment", 1, T0, "A")
    assert trigger_id(CID, "cart_abandonment", 1, T0) not in ids


def test_a_new_snapshot_of_the_cart_restarts_its_ladder() -> None:
    events = [cart(T0, "A"), cart(at(hours=2), "A", products=("p1", "p3"))]
    got = firings(run(engine(), events, at(hours=3.5)), "cart_abandonment")
    assert [(f.step, f.anchor_at, f.due_at) for f in got] == [
        (1, T0, at(hours=1)),
        (1, at(hours=2), at(hours=3)),
    ]


def test_the_conversion_of_a_cart_firing_carries_its_keyed_trigger_id() -> None:
    out = run(engine(), [cart(T0, "A"), order(at(hours=2), "A")], at(hours=3))
    (fired,) = firings(out, "cart_abandonment")
    (conv,) = [e for e in out if isinstance(e, Conversion)]
    assert conv.key == "A" and conv.trigger_id == fired.trigger_id


def test_the_next_due_step_names_its_cart() -> None:
    eng = engine()
    state = CustomerState(customer_id=CID, partition=0)
    eng.ingest(state, cart(T0, "A"), T0)
    (due,) = [d for d in eng.pending(state) if d.rule == "cart_abandonment"]
    assert (due.key, due.due_at, due.anchor_at) == ("A", at(hours=1), T0)
    assert eng.wake_at(state) == at(hours=1)


def test_welcome_ends_with_the_first_order() -> None:
    events = [ev(KIND_SIGNUP, T0), order(at(hours=30))]
    got = firings(run(engine(), events, at(days=5)), "welcome")
    assert [(f.step, f.due_at) for f in got] == [(1, at(hours=24))]


def test_welcome_starts_at_the_first_session_without_a_signup() -> None:
    got = firings(run(engine(), [ev(KIND_SESSION, T0, session_id="s")], at(days=5)), "welcome")
    assert [(f.step, f.anchor_at, f.due_at) for f in got] == [
        (1, T0, at(hours=24)),
        (2, T0, at(hours=72)),
    ]


def test_browse_ends_with_an_order_after_the_view_not_one_before_it() -> None:
    view = ev(KIND_VIEW, T0, product_id="p1")
    after = run(engine(), [view, order(at(hours=2))], at(days=2))
    before = run(engine(), [order(at(hours=-1)), view], at(hours=5))
    assert firings(after, "browse_abandonment") == []
    assert [f.due_at for f in firings(before, "browse_abandonment")] == [at(hours=4)]


def test_milestone_3rd_order_after_a_cancellation_of_the_first() -> None:
    first = order(T0, order_id="o-1")
    events = [
        first,
        order(at(days=1)),
        ev(KIND_CANCEL, at(days=2), order_id="o-1", action="full", amount="20.00", currency="EUR"),
        order(at(days=3)),
        order(at(days=4)),
    ]
    got = firings(run(engine(), events, at(days=6)), "order_milestone")
    # The third order net of the cancellation is the fourth placed, counted from
    # the second (now the first).
    assert [(f.step, f.anchor_at, f.due_at, f.threshold) for f in got] == [
        (1, at(days=1), at(days=4), 3 * 86_400_000_000)
    ]


def test_an_anniversary_of_a_29_february_first_order_is_on_28_february() -> None:
    leap = to_micros(datetime(2024, 2, 29, 12, tzinfo=UTC))
    got = firings(run(engine(), [order(leap)], leap + 400 * 86_400_000_000), "anniversary")
    assert [(f.step, f.due_at) for f in got] == [
        (1, to_micros(datetime(2025, 2, 28, 12, tzinfo=UTC)))
    ]
