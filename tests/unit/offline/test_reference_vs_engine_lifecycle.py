"""The engine and the offline reference agree on the whole lifecycle (docs/lifecycle.md,
issue 24).

Random customers with every input kind - sign-ups, product views, cart snapshots
(updated, checkout_started, emptied, several carts, some at one instant), orders as
purchase/1 and purchase/2 (with and without a cart id and items), full and partial
cancellations dated before and after their order (and of orders never placed),
sessions, consents - on a half-day grid, some an hour off it.  The reference reads
the JSONL file with its own code (agents/offline/lifecycle.py); the engine gets the
same validated events per customer, late within the allowed lateness (each event
arrives at most a day after later ones), and a rules file with every lifecycle
anchor and step on short ladders.  Decisions (trigger id - keyed for carts -, due
time, outcome, holdout, the lifecycle context), conversions, report rows and the
facts the reports read (funnel firsts, cancellation counts, refunds, net orders)
must be identical.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.core.emissions import Conversion, Firing
from agents.core.engine import Engine
from agents.core.reports import CustomerRow
from agents.core.rules import load_rules
from agents.core.rules.history import RuleHistory, Version, set_id
from agents.core.settings import DAY, HOUR, CoreSettings
from agents.core.state import CustomerState
from agents.core.timeutil import iso
from agents.offline.reference import ReferenceResult, compute_decisions
from schemas.records import Event
from tests.unit.offline import test_reference_vs_engine as parity

T0 = parity.T0
MINUTE = HOUR // 60
UNTIL = T0 + 24 * DAY
LATENESS = DAY
CUSTOMERS = parity.CUSTOMERS[:2] + parity.CUSTOMERS[3:4]
PRODUCTS = ("p1", "p2", "p3", "p4")
CARTS = ("cart-a", "cart-b", "cart-c", "cart-d")

RULES = """\
format = 1

[guardrails]
holdout_percent = 50.0
holdout_salt = "parity"
min_gap = "PT1H"
frequency_cap = 6
frequency_window = "P3D"
attribution_window = "P2D"

[lifecycle]
at_risk_after = "P4D"
lapsed_after = "P8D"
priority = 15

[[rule]]
name = "second_purchase"
priority = 10
anchor = "first_order"
cancel_on = ["purchase"]
steps = ["P1D", "P3D"]

[[rule]]
name = "inactivity"
priority = 20
anchor = "last_activity"
steps = ["P2D", "P4D"]

[[rule]]
name = "overdue"
priority = 30
anchor = { kind = "last_order", min_orders = 2 }
steps = [{ cadence = 1.5, floor = "P1D" }]

[[rule]]
name = "welcome"
priority = 5
anchor = "signup"
steps = ["PT12H", "P2D"]

[[rule]]
name = "browse_abandonment"
priority = 6
anchor = "last_view"
cancel_on = ["purchase"]
steps = ["PT12H", "P1D"]

[[rule]]
name = "cart_abandonment"
priority = 4
anchor = "cart"
steps = ["PT12H", "P1D", "P3D"]

[[rule]]
name = "cart_any_product"
priority = 3
anchor = { kind = "cart", exit = "any_product" }
steps = ["P1D"]

[[rule]]
name = "order_milestone"
priority = 40
anchor = "first_order"
steps = [{ order = 1 }, { order = 2 }, { order = 3 }, { order = 5 }]
"""

# The same with send windows on the cart rules: at most one deferred firing per rule,
# another cart's step superseding it, judged (or cancelled) at its send time with
# the context as of then (docs/send-windows.md "Deferred firings").
WINDOWED = RULES.replace(
    'steps = ["PT12H", "P1D", "P3D"]\n',
    'steps = ["PT12H", "P1D", "P3D"]\n'
    'send_window = { windows = [{ days = "all", open = "09:00", close = "12:00" }] }\n',
).replace(
    'steps = ["P1D"]\n',
    'steps = ["P1D"]\nsend_window = { windows = [{ days = "weekdays", open = "10:30", '
    'close = "20:00" }], policy = "drop" }\n',
)
assert WINDOWED.count("send_window") == 2

# A rules change on day 8: the cart rule's ladder shorter (a restart, cart by cart),
# the browse rule's longer, the milestones unchanged (docs/rules.md "Changing rules").
CHANGED = RULES.replace('steps = ["PT12H", "P1D", "P3D"]', 'steps = ["PT6H", "P2D"]').replace(
    'cancel_on = ["purchase"]\nsteps = ["PT12H", "P1D"]',
    'cancel_on = ["purchase"]\nsteps = ["PT12H", "P1D", "P2D"]',
)
assert CHANGED.count("PT6H") == 1 and CHANGED.count('"P2D"]') == 3
Changes = Sequence[tuple[int, str]]

# The lifecycle's own keys of a decision's context (docs/lifecycle.md "Rules").
CONTEXT_KEYS = ("products", "cart", "milestone")


# --- building event files --------------------------------------------------------------


def _line(schema: str, cid: str, t: int, event_id: str, **fields: Any) -> bytes:
    return orjson.dumps(
        {"schema": schema, "event_id": event_id, "customer_id": cid, "occurred_at": iso(t)} | fields
    )


def _items(rng: random.Random, n: int) -> list[dict[str, Any]]:
    return [
        {
            "product_id": p,
            "quantity": rng.randint(1, 3),
            "unit_price": rng.choice(["9.99", "10", "0.5"]),
            "currency": "EUR",
        }
        for p in rng.sample(PRODUCTS, n)
    ]


KINDS = (
    "signup",
    "view",
    "view",
    "view",
    "cart",
    "cart",
    "cart",
    "order",
    "order",
    "order2",
    "order2",
    "cancel",
    "cancel",
    "session",
    "opt_out",
)


def build(seed: int, size: int) -> list[bytes]:
    """``size`` random events over 20 days for the customers (module docstring)."""
    rng = random.Random(seed)
    lines: list[bytes] = []
    orders: dict[str, list[str]] = {c: [] for c in CUSTOMERS}
    for n in range(size):
        cid = rng.choice(CUSTOMERS)
        t = T0 + rng.randint(0, 40) * 12 * HOUR + rng.choice([0, 0, 0, HOUR])
        kind = rng.choice(KINDS)
        eid = f"e{n}"
        if kind == "signup":
            lines.append(_line("signup/1", cid, t, eid))
        elif kind == "view":
            lines.append(_line("product_view/1", cid, t, eid, product_id=rng.choice(PRODUCTS)))
        elif kind == "cart":
            action = rng.choice(["updated", "updated", "checkout_started", "emptied"])
            items = [] if action == "emptied" else _items(rng, rng.randint(0, 2))
            cart = rng.choice(CARTS[:3])
            # Some half an hour off the orders' instants, most on them.
            at = t + rng.choice([0, 0, 30 * MINUTE])
            lines.append(_line("cart/1", cid, at, eid, cart_id=cart, action=action, items=items))
        elif kind in ("order", "order2"):
            oid = f"o{n}"
            orders[cid].append(oid)
            amount = rng.choice(["10.00", "25.50", "3"])
            if kind == "order":
                lines.append(
                    _line("purchase/1", cid, t, eid, order_id=oid, amount=amount, currency="EUR")
                )
            else:
                extra: dict[str, Any] = {}
                if rng.random() < 0.7:
                    extra["cart_id"] = rng.choice(CARTS)
                if rng.random() < 0.7:
                    extra["items"] = _items(rng, rng.randint(1, 2))
                lines.append(
                    _line(
                        "purchase/2",
                        cid,
                        t,
                        eid,
                        order_id=oid,
                        amount=amount,
                        currency="EUR",
                        **extra,
                    )
                )
        elif kind == "cancel":
            # An order placed before in the file, or one placed later, or none at all.
            future = f"o{n + rng.randint(1, 6)}"
            oid = rng.choice(orders[cid]) if orders[cid] and rng.random() < 0.7 else future
            lines.append(
                _line(
                    "order_cancelled/1",
                    cid,
                    t,
                    eid,
                    order_id=oid,
                    scope=rng.choice(["full", "full", "partial"]),
                    amount=rng.choice(["5.00", "10.00"]),
                    currency="EUR",
                )
            )
        elif kind == "session":
            lines.append(_line("session/1", cid, t, eid, session_id=f"s{n}"))
        else:
            lines.append(_line("consent/1", cid, t, eid, status="opted_out"))
    return lines


def late_arrivals(lines: list[bytes], seed: int, until: int) -> list[tuple[Event, int]]:
    """Every event with the clock it arrives under: each arrives up to LATENESS after
    its own time among later ones, the clock LATENESS behind the newest arrival key, so
    it never passes an event still to come (the stream's lateness, docs/time.md)."""
    rng = random.Random(seed)
    events = [parity._validate(line) for line in lines]
    keyed = sorted(
        ((e.occurred_at + rng.randint(0, LATENESS), i, e) for i, e in enumerate(events)),
        key=lambda x: (x[0], x[1]),
    )
    return [(e, min(key - LATENESS - 1, until)) for key, _, e in keyed]


# --- the two sides ---------------------------------------------------------------------

Decision = tuple[str, str, str, bool, bytes]  # trigger_id, due_at, outcome, holdout, context
Outcome = tuple[str, str, str, str]


@dataclasses.dataclass
class Side:
    decisions: dict[str, list[Decision]]
    conversions: list[Outcome]
    rows: dict[str, CustomerRow]
    facts: dict[str, dict[str, Any]]


def _context(context: dict[str, Any] | None) -> bytes:
    mine = {k: v for k, v in (context or {}).items() if k in CONTEXT_KEYS}
    return orjson.dumps(mine, option=orjson.OPT_SORT_KEYS)


def reference_side(
    lines: list[bytes], until: int, rules: str = RULES, changes: Changes = ()
) -> tuple[Side, ReferenceResult]:
    result = compute_decisions(
        parity.by_time(lines),
        CoreSettings(),
        rules=rules,
        until=until,
        now=parity.NOW,
        changes=changes,
    )
    side = Side({}, [], {r.customer_id: r for r in result.rows}, {})
    for d in result.decisions:
        side.decisions.setdefault(d["customer_id"], []).append(
            (d["trigger_id"], d["due_at"], d["outcome"], d["holdout"], _context(d.get("context")))
        )
    side.conversions = sorted(
        (o["trigger_id"], o["group"], o["converted_at"], o["order_id"]) for o in result.outcomes
    )
    for cid, fx in result.facts.items():
        h = fx.history
        assert h is not None
        o = h.orders(until)
        side.facts[cid] = {
            "signup_at": h.signup_at(until),
            "first_session_at": h.first_session_at(until),
            "first_view_at": h.first_view_at(until),
            "last_view_at": h.last_view_at(until),
            "views": [[t, p] for t, p in h.newest_views(until)],
            "carts": [
                [c.cart_id, c.at, c.action, list(c.items), c.ordered_at, c.matched_at]
                for c in h.carts(until)
            ],
            "first_cart_at": h.first_cart_at(until),
            "first_checkout_at": h.first_checkout_at(until),
            "orders": o.count,
            "order_log": [[at, key, format(a, "f"), cur] for at, key, a, cur in o.log],
            "cancelled_orders": o.cancelled,
            "partial_cancels": o.partial,
            "cancels_dropped": o.dropped,
            "refunded": {c: format(a, "f") for c, a in o.refunded},
        }
    return side, result


def engine_side(
    arrivals: list[tuple[Event, int]], until: int, rules: str = RULES, changes: Changes = ()
) -> Side:
    seed = load_rules(rules)
    engine = Engine(CoreSettings(rules=seed, stream_allowed_lateness=LATENESS))
    if changes:
        versions = [Version(set_id(seed), seed, rules)]
        for t, text in changes:
            new = load_rules(text)
            versions.append(Version(set_id(new), new, text, effective_at=t, applied_at=t))
        engine = engine.with_history(RuleHistory(tuple(versions)))
    states: dict[str, CustomerState] = {}
    emitted: dict[str, list[Any]] = {}
    for e, clock in arrivals:
        state = states.setdefault(e.customer_id, CustomerState(customer_id=e.customer_id))
        emitted.setdefault(e.customer_id, []).extend(engine.ingest(state, e, clock) or [])
    side = Side({}, [], {}, {})
    for cid, state in states.items():
        out = emitted[cid] + list(engine.advance(state, until))
        for x in out:
            if isinstance(x, Firing) and not x.backfill:
                side.decisions.setdefault(cid, []).append(
                    (x.trigger_id, iso(x.due_at), x.outcome, x.holdout, _context(x.context))
                )
            elif isinstance(x, Conversion):
                side.conversions.append((x.trigger_id, x.group, iso(x.converted_at), x.order_id))
        side.rows[cid] = CustomerRow.from_state(state)
        side.facts[cid] = {
            "signup_at": state.signup_at,
            "first_session_at": state.first_session_at,
            "first_view_at": state.first_view_at,
            "last_view_at": state.last_view_at,
            "views": [list(v) for v in state.views],
            "carts": [
                [c.cart_id, c.at, c.action, list(c.items), c.ordered_at, c.matched_at]
                for c in state.carts
            ],
            "first_cart_at": state.first_cart_at,
            "first_checkout_at": state.first_checkout_at,
            "orders": state.orders,
            "order_log": [[e.at, e.key, e.amount, e.currency] for e in state.order_log],
            "cancelled_orders": state.cancelled_orders,
            "partial_cancels": state.partial_cancels,
            "cancels_dropped": state.cancels_dropped,
            "refunded": dict(state.refunded),
        }
    side.conversions.sort()
    return side


def check(
    lines: list[bytes], seed: int, until: int = UNTIL, rules: str = RULES, changes: Changes = ()
) -> ReferenceResult:
    reference, result = reference_side(lines, until, rules, changes)
    engine = engine_side(late_arrivals(lines, seed, until), until, rules, changes)
    for cid, facts in reference.facts.items():
        for name, value in facts.items():
            assert engine.facts[cid][name] == value, (cid, name)
    assert engine.decisions == reference.decisions
    assert engine.conversions == reference.conversions
    assert engine.rows.keys() == reference.rows.keys()
    for cid, row in reference.rows.items():
        for f in dataclasses.fields(CustomerRow):
            assert getattr(engine.rows[cid], f.name) == getattr(row, f.name), (cid, f.name)
    return result


@pytest.mark.parametrize("seed", range(12))
def test_seeded_lifecycle_histories_agree(seed: int) -> None:
    check(build(seed, 60), seed)


@pytest.mark.parametrize("seed", range(30))
def test_seeded_lifecycle_histories_agree_with_send_windows_on_the_cart_rules(seed: int) -> None:
    check(build(seed, 40), seed, rules=WINDOWED)


def test_the_windowed_histories_defer_cancel_and_drop_cart_firings() -> None:
    outcomes = set()
    for seed in range(100, 200):
        result = check(build(seed, 40), seed, rules=WINDOWED)
        outcomes |= {
            (d["outcome"], d["send_at"] != d["due_at"])
            for d in result.decisions
            if d["rule"].startswith("cart_") and "send_at" in d
        }
    assert {("cancelled", True), ("superseded", True), ("outside_window", True)} <= outcomes
    assert any(outcome in ("delivered", "holdout") and waited for outcome, waited in outcomes)


@pytest.mark.parametrize("seed", range(30))
def test_seeded_lifecycle_histories_agree_across_a_rules_change(seed: int) -> None:
    check(build(seed, 50), seed, changes=[(T0 + 8 * DAY + 6 * HOUR, CHANGED)])


def test_a_rules_change_restarts_cart_ladders_cart_by_cart() -> None:
    superseded = 0
    for seed in range(30):
        result = check(build(seed, 50), seed, changes=[(T0 + 8 * DAY + 6 * HOUR, CHANGED)])
        superseded += sum(
            d["outcome"] == "superseded" and d["rule"] == "cart_abandonment"
            for d in result.decisions
        )
    assert superseded > 0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32), st.integers(1, 50), st.integers(0, 24))
def test_engine_and_reference_agree_on_the_lifecycle(seed: int, size: int, day: int) -> None:
    check(build(seed, size), seed, until=T0 + day * DAY)


def test_the_seeded_histories_reach_every_lifecycle_rule_and_a_cancellation() -> None:
    """The generator is worth its run: every lifecycle rule fires, carts are kept
    open and closed, and orders are cancelled before and after they come."""
    rules: set[str] = set()
    cancelled = pending = keyed_at_once = 0
    for seed in range(12):
        result = check(build(seed, 60), seed)
        rules |= {d["rule"] for d in result.decisions}
        for fx in result.facts.values():
            assert fx.history is not None
            o = fx.history.orders()
            cancelled += o.cancelled
            pending += len(o.pending)
        at = [(d["customer_id"], d["rule"], d["due_at"]) for d in result.decisions]
        keyed_at_once += len(at) - len(set(at))
    assert {"welcome", "browse_abandonment", "cart_abandonment", "order_milestone"} <= rules
    assert cancelled > 0 and pending > 0
    assert keyed_at_once > 0  # two carts of one customer due at one instant


def _named_cases() -> list[tuple[str, list[bytes], int]]:
    """The reference's named cases (tests/unit/offline/test_reference_lifecycle.py)."""
    from tests.unit.offline import test_reference_lifecycle as named

    t0, day, hour = named.T0, DAY, HOUR
    first3 = [named.order(t0, "o1"), named.order(t0 + day, "o2"), named.order(t0 + 2 * day, "o3")]
    return [
        (
            "another cart's order",
            [
                named.cart(t0, "A"),
                named.cart(t0 + 10, "B", products=("p2",)),
                named.order(t0 + hour // 2, "o1", "B"),
            ],
            t0 + 2 * day,
        ),
        (
            "emptied, then a new snapshot",
            [
                named.cart(t0, "A"),
                named.cart(t0 + 2 * hour, "A", action="emptied", products=()),
                named.cart(t0 + 3 * day, "A", products=("p3",)),
            ],
            t0 + 5 * day,
        ),
        (
            "two carts at one instant",
            [named.cart(t0, "cart-b"), named.cart(t0, "cart-a", products=("p2",))],
            t0 + 2 * day,
        ),
        (
            "cancellation before its order",
            [named.cancel(t0, "o1"), named.order(t0 + day, "o1"), named.order(t0 + 2 * day, "o2")],
            t0 + 3 * day,
        ),
        ("cancellation of the first", [*first3, named.cancel(t0 + 3 * day, "o1")], t0 + 4 * day),
        ("cancellation of the second", [*first3, named.cancel(t0 + 3 * day, "o2")], t0 + 4 * day),
        (
            "cancellation of a middle order of 40",
            [named.order(t0 + i * hour, f"o{i}") for i in range(40)]
            + [named.cancel(t0 + 2 * day, "o5"), named.cancel(t0 + 2 * day + 1, "o39")],
            t0 + 3 * day,
        ),
        (
            "welcome back after the only order is cancelled",
            [
                named.line("signup/1", t0),
                named.order(t0 + 2 * day, "o1"),
                named.cancel(t0 + 4 * day, "o1"),
            ],
            t0 + 5 * day,
        ),
    ]


@pytest.mark.parametrize("case", range(8))
def test_the_named_cases_agree(case: int) -> None:
    """Each named case of the reference's own tests, through the engine too (with the
    events late within the lateness)."""
    from tests.unit.offline import test_reference_lifecycle as named

    _, lines, until = _named_cases()[case]
    result = check(lines, case, until=until, rules=named.RULES)
    assert result.rows
