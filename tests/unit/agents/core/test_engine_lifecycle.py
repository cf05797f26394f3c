"""The engine on the lifecycle's rules (docs/lifecycle.md "Rules"): the welcome,
browse and keyed cart ladders and the order milestones, as a shop running
``lifecycle.toml`` sees them."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from jsonschema import Draft202012Validator

import schemas
from agents.core.budget import firing_memory
from agents.core.emissions import Conversion, Emission, Firing
from agents.core.engine import Engine
from agents.core.ids import trigger_id
from agents.core.rules import builtin_text, default_text, load_rules
from agents.core.rules.history import RuleHistory, Version, set_id
from agents.core.rules.model import RuleSet
from agents.core.settings import CoreSettings
from agents.core.state import CustomerState
from agents.core.timeutil import to_micros
from agents.messages import decision_record
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


SCHEMAS = Path(schemas.__file__).parent
DECISION = Draft202012Validator(json.loads((SCHEMAS / "decision.schema.json").read_text()))
NUDGE = Draft202012Validator(json.loads((SCHEMAS / "nudge.schema.json").read_text()))
BASE_CONTEXT = {
    "order_count",
    "spend",
    "first_purchase_at",
    "last_purchase_at",
    "last_activity_at",
    "lifecycle_stage",
}


def records_valid(f: Firing) -> dict[str, Any]:
    """The decision and nudge records of ``f`` pass their JSON Schemas; its context."""
    record = decision_record(f, fired_at=f.due_at, clock="stream", outcome=f.outcome, holdout=False)
    DECISION.validate(record.to_dict())
    NUDGE.validate(record.nudge_dict())
    assert record.trigger_id == f.trigger_id
    return f.context


def test_a_cart_nudge_carries_the_carts_items_and_value_per_currency() -> None:
    items = (Item("p1", 2, "9.50", "EUR"), Item("p2", 3, "0.1", "EUR"), Item("p3", 1, "5", "USD"))
    events = [
        ev(KIND_CART, T0, cart_id="A", action="checkout_started", items=items),
        cart(T0, "B"),
    ]
    got = firings(run(engine(), events, at(hours=1)), "cart_abandonment")
    context = records_valid(got[0])
    assert context["cart"] == {
        "cart_id": "A",
        "action": "checkout_started",
        "items": [
            {"product_id": "p1", "quantity": 2, "unit_price": "9.50", "currency": "EUR"},
            {"product_id": "p2", "quantity": 3, "unit_price": "0.1", "currency": "EUR"},
            {"product_id": "p3", "quantity": 1, "unit_price": "5", "currency": "USD"},
        ],
        "value": {"EUR": "19.30", "USD": "5"},
    }
    assert records_valid(got[1])["cart"]["cart_id"] == "B"


def test_a_browse_nudge_names_the_newest_viewed_products_as_of_its_due_time() -> None:
    views = [ev(KIND_VIEW, at(hours=h), product_id=f"p{h}") for h in range(7)]
    got = firings(run(engine(), views, at(hours=10.5)), "browse_abandonment")
    assert [f.due_at for f in got] == [at(hours=10)]
    assert records_valid(got[0])["products"] == ["p6", "p5", "p4", "p3", "p2"]


def test_milestone_nudges_say_which_milestone_and_other_rules_say_nothing_new() -> None:
    orders = [order(at(days=d)) for d in (0, 1, 2)]
    out = run(engine(), orders, at(days=370))
    (third,) = firings(out, "order_milestone")
    (year,) = firings(out, "anniversary")
    assert records_valid(third)["milestone"] == {"orders": 3}
    assert records_valid(year)["milestone"] == {"years": 1}
    others = [f for f in out if isinstance(f, Firing) and f.rule in ("inactivity", "overdue")]
    assert others and all(set(records_valid(f)) == BASE_CONTEXT for f in others)


CART_HEAD = (
    'format = 1\ndefault_timezone = "UTC"\n[guardrails]\nholdout_percent = 0\nmin_gap = "PT0S"\n'
)
CART_RULE = '[[rule]]\nname = "cart"\npriority = 4\nanchor = "cart"\nsteps = [{steps}]\n{extra}\n'


def cart_rules(steps: str, extra: str = "") -> RuleSet:
    return load_rules(CART_HEAD + CART_RULE.format(steps=steps, extra=extra))


def test_a_rules_change_restarts_each_carts_ladder_superseding_its_steps_due() -> None:
    seed = cart_rules('"PT1H", "PT2H", "PT3H"')
    new = cart_rules('"PT30M", "PT45M", "PT5H"')
    switch = at(hours=100 / 60)
    history = RuleHistory.seed(seed).add(Version(set_id(new), new, "", switch, switch))
    eng = Engine(CoreSettings(rules=seed)).with_history(history)
    out = run(eng, [cart(T0, "A"), cart(at(hours=0.5), "B")], at(hours=6))
    assert [(f.key, f.step, f.due_at, f.outcome) for f in firings(out, "cart")] == [
        ("A", 1, at(hours=1), "delivered"),
        ("B", 1, at(hours=1.5), "delivered"),
        # At the switch, per cart (cart id order): the new step 2 already due.
        ("A", 2, at(hours=0.75), "superseded"),
        ("B", 2, at(hours=1.25), "superseded"),
        ("A", 3, at(hours=5), "delivered"),
        ("B", 3, at(hours=5.5), "delivered"),
    ]


def test_a_cart_firing_kept_for_its_send_window_names_its_cart() -> None:
    window = 'send_window = { windows = [ { days = "all", open = "09:00", close = "10:30" } ] }'
    eng = Engine(CoreSettings(rules=cart_rules('"PT1H"', window)))
    state = CustomerState(customer_id=CID, partition=0)
    assert eng.ingest(state, cart(T0, "A"), at(hours=2)) == []
    (kept,) = state.deferred
    assert kept.key == "A" and len(kept.to_wire()) == 9
    back = CustomerState.from_dict(orjson.loads(orjson.dumps(state.to_dict())))
    assert back.deferred == state.deferred
    out = eng.advance(back, at(days=1))
    (sent,) = firings(out, "cart")
    assert (sent.key, sent.outcome, sent.send_at) == ("A", "delivered", at(hours=23))
    assert sent.trigger_id == trigger_id(CID, "cart", 1, T0, "A")
    assert back.carts[0].progress == {"cart": [T0, 1]}


def test_a_remembered_cart_firing_keeps_its_cart_in_the_row() -> None:
    eng = engine()
    state = CustomerState(customer_id=CID, partition=0)
    eng.ingest(state, cart(T0, "A"), at(hours=2))
    row = state.to_dict()
    (entry,) = [f for f in row["recent_firings"] if f[1] == "cart_abandonment"]
    assert entry == [at(hours=1), "cart_abandonment", 1, T0, "delivered", None, None, "A"]
    back = CustomerState.from_dict(orjson.loads(orjson.dumps(row)))
    got = eng.ingest(back, order(at(hours=3), "A"), at(hours=3))
    assert isinstance(got, list)
    (conv,) = [e for e in got if isinstance(e, Conversion)]
    assert conv.trigger_id == trigger_id(CID, "cart_abandonment", 1, T0, "A")
    # An unkeyed rule's entry keeps its six elements.
    assert all(len(f) == 6 for f in row["recent_firings"] if f[1] != "cart_abandonment")


def test_only_the_newest_browse_firings_can_convert_an_order() -> None:
    """In the control group nothing limits firings: a customer who views every few
    hours gets one per view, and only the rule's newest (its 2 steps' worth) claim
    the order (docs/lifecycle.md "Attribution")."""
    text = builtin_text("lifecycle").replace("holdout_percent = 10.0", "holdout_percent = 100")
    eng = Engine(CoreSettings(rules=load_rules(text)))
    views = [ev(KIND_VIEW, at(hours=h), product_id="p1") for h in (0, 5, 10)]
    out = run(eng, [*views, order(at(hours=15))], at(hours=16))
    assert [(f.due_at, f.outcome) for f in firings(out, "browse_abandonment")] == [
        (at(hours=4), "holdout"),
        (at(hours=9), "holdout"),
        (at(hours=14), "holdout"),
    ]
    converted = [c.due_at for c in out if isinstance(c, Conversion)]
    assert converted == [at(hours=9), at(hours=14)]


def test_the_lifecycle_file_fits_the_firings_budget_with_128_character_cart_ids() -> None:
    memory = firing_memory(CoreSettings(rules=load_rules(builtin_text("lifecycle"))))
    # Each remembered cart firing may carry an escaped 128-character cart id.
    assert memory.entry_bytes > 128 * 6 and memory.fits
    # Browse 2 and cart 2 x 3 carts: capped however often the customer views or
    # updates a cart; welcome twice its steps; the rest as before.
    default = firing_memory(CoreSettings(rules=load_rules(default_text())))
    assert memory.attribution == default.attribution + 2 + 6 + 4 + 3 + 3


def test_a_dry_run_of_a_change_counts_a_customer_mid_cart_ladder() -> None:
    """`retention rules publish --dry-run` counts the customers a change restarts: a
    cart ladder is one (its steps due by then, over the carts, superseded)."""
    seed = cart_rules('"PT1H", "PT2H", "PT3H"')
    new = cart_rules('"PT30M", "PT45M", "PT5H"')
    eng = Engine(CoreSettings(rules=seed))
    state = CustomerState(customer_id=CID, partition=0)
    eng.ingest(state, cart(T0, "A"), T0)
    eng.ingest(state, cart(at(hours=0.5), "B"), at(hours=1.2))
    version = Version(set_id(new), new, "", at(hours=1.2), at(hours=1.2))
    # A fired step 1 at 1h: its new step 2 (45 min) is due; B's new step 1 (at 1h).
    assert eng.preview_switch(state, version, at(hours=1.2)) == {"cart": ("restart", 2)}
    emptied = CustomerState(customer_id=CID, partition=0)
    eng.ingest(emptied, cart(T0, "A", "emptied", ()), T0)
    assert eng.preview_switch(emptied, version, at(hours=1.2)) == {}


def test_a_cart_rule_cancelled_on_a_session_ends_only_the_carts_before_it() -> None:
    eng = Engine(CoreSettings(rules=cart_rules('"PT1H"', 'cancel_on = ["session"]')))
    visit = ev(KIND_SESSION, at(hours=0.5), session_id="s")
    out = run(eng, [cart(T0, "A"), visit, cart(at(hours=0.75), "B")], at(hours=3))
    assert [(f.key, f.due_at) for f in firings(out, "cart")] == [("B", at(hours=1.75))]


def test_a_third_order_at_the_first_orders_instant_is_a_normal_due() -> None:
    """Threshold 0 (the k-th order at the first's instant) fires like any step, and a
    sub-second one is a valid record too."""
    same = run(engine(), [order(T0), order(T0), order(T0)], at(hours=1))
    (third,) = firings(same, "order_milestone")
    assert (third.due_at, third.threshold, third.outcome) == (T0, 0, "delivered")
    assert records_valid(third)["milestone"] == {"orders": 3}
    soon = run(engine(), [order(T0), order(T0), order(T0 + 1_500_000)], at(hours=1))
    (third,) = firings(soon, "order_milestone")
    assert third.threshold == 1_500_000 and records_valid(third)["order_count"] == 3
