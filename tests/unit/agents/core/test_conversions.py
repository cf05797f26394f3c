"""Conversions (docs/rules.md "Outcomes (conversions)", ``retention.outcomes``) and the
counts behind lift.

An order in (D, D + attribution window] after a delivered or holdout firing due
at D converts it, once; suppressed firings never convert.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from agents.core.emissions import Conversion, Emission, Firing
from agents.core.engine import Engine
from agents.core.ids import holdout_bucket, trigger_id
from agents.core.memory import attribute
from agents.core.settings import DAY, HOUR, CoreSettings, LadderSettings
from agents.core.state import CountKey, CustomerState, RecentFiring
from agents.messages import outcome_record
from schemas.records import Event
from tests.unit.agents.factories import OPTED_OUT, T0, at, consent, feed_in_time_order, purchase

ROOT = Path(__file__).resolve().parents[4]
SP = "second_purchase"
CID = next(c for c in (f"cus_{n:06d}" for n in itertools.count()) if holdout_bucket(c, "r") >= 10)
D = at(days=7)  # second_purchase step 1, due 7 days after the first order at T0


def engine(*steps: int, **overrides: Any) -> Engine:
    """second_purchase only (default one step at 7 d); nobody held out unless asked."""
    settings: dict[str, Any] = {"holdout_percent": 0.0, "holdout_salt": "r"}
    settings.update(overrides)
    return Engine(
        CoreSettings(
            second_purchase=LadderSettings(SP, steps or (7 * DAY,)),
            inactivity=LadderSettings("inactivity", (14 * DAY,), enabled=False),
            overdue_enabled=False,
            **settings,
        )
    )


def run(events: list[Event], eng: Engine, until: int) -> tuple[list[Emission], CustomerState]:
    state = CustomerState(customer_id=CID, partition=0)
    return feed_in_time_order(eng, state, events, until), state


def conversions(emitted: list[Emission]) -> list[Conversion]:
    return [c for c in emitted if isinstance(c, Conversion)]


def firings(emitted: list[Emission]) -> list[Firing]:
    return [f for f in emitted if isinstance(f, Firing)]


def first_and(*later: int) -> list[Event]:
    """The first order at T0, then orders at these times."""
    return [purchase(CID, T0, "ORD-0")] + [
        purchase(CID, t, f"ORD-{i}") for i, t in enumerate(later, start=1)
    ]


# --- the window ------------------------------------------------------------------------


def test_an_order_inside_the_window_converts_a_delivered_firing() -> None:
    emitted, state = run(first_and(D + 30 * HOUR), engine(), at(days=60))
    (f,) = firings(emitted)
    assert f.outcome == "delivered"
    (c,) = conversions(emitted)
    assert (c.rule, c.step, c.group, c.due_at, c.converted_at, c.order_id) == (
        SP,
        1,
        "delivered",
        D,
        D + 30 * HOUR,
        "ORD-1",
    )
    assert c.hours_to_convert == 30.0
    assert c.trigger_id == f.trigger_id == trigger_id(CID, SP, 1, T0)
    assert state.conversion_counts == {CountKey(SP, 1, "delivered"): 1}
    assert state.decision_counts == {CountKey(SP, 1, "delivered"): 1}


@pytest.mark.parametrize(
    ("offset", "converts"),
    [
        (1, True),  # just after D
        (5 * DAY - 1, True),
        (5 * DAY, True),  # D + 5 d: the window is closed on the right
        (5 * DAY + 1, False),
        (6 * DAY, False),
    ],
)
def test_the_attribution_window_is_d_exclusive_to_d_plus_5_days_inclusive(
    offset: int, converts: bool
) -> None:
    emitted, state = run(first_and(D + offset), engine(), at(days=60))
    assert [c.converted_at for c in conversions(emitted)] == ([D + offset] if converts else [])
    assert state.conversion_counts == ({CountKey(SP, 1, "delivered"): 1} if converts else {})


def test_an_order_exactly_at_d_is_counted_before_the_firing_so_nothing_converts() -> None:
    emitted, state = run(first_and(D), engine(), at(days=60))
    assert firings(emitted) == []  # the second order came in time
    assert conversions(emitted) == []
    assert state.conversion_counts == {}


def test_hours_to_convert_is_measured_from_the_due_time() -> None:
    emitted, _ = run(first_and(D + 90 * 60 * 1_000_000), engine(), at(days=60))
    assert [c.hours_to_convert for c in conversions(emitted)] == [1.5]


@pytest.mark.parametrize("after", [1, 1_000_000, 1_799_999])
def test_an_order_moments_after_the_due_time_converts_in_a_positive_number_of_hours(
    after: int,
) -> None:
    # outcome/1 says hours_to_convert > 0; 3-decimal rounding alone gave 0.0 here.
    (c,) = conversions(run(first_and(D + after), engine(), at(days=60))[0])
    assert c.hours_to_convert == 0.001
    record = outcome_record(c, attribution_window=5 * DAY).to_dict()
    schema = json.loads((ROOT / "schemas" / "outcome.schema.json").read_text())
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(record)) == []


def test_the_window_is_configurable() -> None:
    eng = engine(attribution_window=1 * DAY)
    assert conversions(run(first_and(D + DAY), eng, at(days=60))[0]) != []
    assert conversions(run(first_and(D + DAY + 1), eng, at(days=60))[0]) == []


# --- once per firing -------------------------------------------------------------------


def test_a_second_order_in_the_window_does_not_convert_the_firing_twice() -> None:
    emitted, state = run(first_and(D + 1 * DAY, D + 2 * DAY), engine(), at(days=60))
    assert [(c.converted_at, c.order_id) for c in conversions(emitted)] == [(D + 1 * DAY, "ORD-1")]
    assert state.conversion_counts == {CountKey(SP, 1, "delivered"): 1}


def test_one_order_converts_each_earlier_firing_in_its_window_once() -> None:
    # Steps at 1 d and 3 d, both delivered (48 h apart); the order at day 4 is
    # within 5 days of both: one conversion for each firing.
    eng = engine(1 * DAY, 3 * DAY)
    emitted, state = run(first_and(at(days=4), at(days=5)), eng, at(days=60))
    assert [(c.step, c.converted_at) for c in conversions(emitted)] == [
        (1, at(days=4)),
        (2, at(days=4)),
    ]
    assert state.conversion_counts == {
        CountKey(SP, 1, "delivered"): 1,
        CountKey(SP, 2, "delivered"): 1,
    }


def test_a_late_order_still_converts_by_its_event_time() -> None:
    eng = engine()
    state = CustomerState(customer_id=CID, partition=0)
    eng.ingest(state, purchase(CID, T0, "ORD-0"), T0)
    assert [f.outcome for f in firings(eng.advance(state, at(days=20)))] == ["delivered"]
    late = eng.ingest(state, purchase(CID, D + 2 * DAY, "ORD-1"), at(days=20))
    assert late is not None
    assert [(c.converted_at, c.group) for c in conversions(late)] == [(D + 2 * DAY, "delivered")]


def test_a_duplicate_order_does_not_convert_again() -> None:
    eng = engine()
    state = CustomerState(customer_id=CID, partition=0)
    eng.ingest(state, purchase(CID, T0, "ORD-0"), T0)
    eng.advance(state, D)
    order = purchase(CID, D + DAY, "ORD-1")
    first = eng.ingest(state, order, D + DAY)
    retry = eng.ingest(state, purchase(CID, D + 2 * DAY, "ORD-1", event_id="evt-retry"), D + DAY)
    assert first is not None and len(conversions(first)) == 1
    assert retry is None
    assert state.conversion_counts == {CountKey(SP, 1, "delivered"): 1}


# --- groups ----------------------------------------------------------------------------


def test_a_holdout_firing_converts_into_the_holdout_group() -> None:
    emitted, state = run(first_and(D + DAY), engine(holdout_percent=100.0), at(days=60))
    assert [f.outcome for f in firings(emitted)] == ["holdout"]
    assert [c.group for c in conversions(emitted)] == ["holdout"]
    assert state.conversion_counts == {CountKey(SP, 1, "holdout"): 1}
    assert state.decision_counts == {CountKey(SP, 1, "holdout"): 1}


def test_an_opted_out_firing_never_converts() -> None:
    events = [*first_and(D + DAY), consent(CID, at(days=1), OPTED_OUT)]
    emitted, state = run(events, engine(), at(days=60))
    assert [f.outcome for f in firings(emitted)] == ["opted_out"]
    assert conversions(emitted) == []
    assert state.conversion_counts == {}
    assert state.decision_counts == {CountKey(SP, 1, "opted_out"): 1}


def test_a_min_gap_firing_never_converts() -> None:
    eng = engine(1 * DAY, 1 * DAY + 1 * HOUR)
    emitted, state = run(first_and(at(days=2)), eng, at(days=60))
    assert [f.outcome for f in firings(emitted)] == ["delivered", "min_gap"]
    assert [(c.step, c.group) for c in conversions(emitted)] == [(1, "delivered")]
    assert state.decision_counts == {CountKey(SP, 1, "delivered"): 1, CountKey(SP, 2, "min_gap"): 1}
    assert state.conversion_counts == {CountKey(SP, 1, "delivered"): 1}


def test_a_frequency_capped_firing_never_converts() -> None:
    eng = engine(1 * DAY, 2 * DAY, frequency_cap=1)
    emitted, state = run(first_and(at(days=2, hours=1)), eng, at(days=60))
    assert [f.outcome for f in firings(emitted)] == ["delivered", "frequency_cap"]
    assert [(c.step, c.group) for c in conversions(emitted)] == [(1, "delivered")]
    assert state.conversion_counts == {CountKey(SP, 1, "delivered"): 1}


def test_counts_add_up_across_a_history() -> None:
    # Step 1 (day 7) delivered and converted by the order at day 8, then inactivity
    # is off and second_purchase is cancelled: the lifetime counts show just that.
    emitted, state = run(first_and(at(days=8)), engine(7 * DAY, 14 * DAY), at(days=60))
    assert [(f.step, f.outcome) for f in firings(emitted)] == [(1, "delivered")]
    assert state.decision_counts == {CountKey(SP, 1, "delivered"): 1}
    assert state.conversion_counts == {CountKey(SP, 1, "delivered"): 1}
    assert [d["converted_at"] for d in state.recent_decisions()] == ["2026-03-10T10:00:00Z"]


# --- the converting order's value (outcome/1 amount and currency) ----------------------


def test_a_conversion_names_the_converting_orders_amount_and_currency_as_placed() -> None:
    events = [purchase(CID, T0, "ORD-0"), purchase(CID, D + HOUR, "ORD-1", amount="120.50")]
    emitted, _ = run(events, engine(), at(days=60))
    (c,) = conversions(emitted)
    record = outcome_record(c, attribution_window=5 * DAY).to_dict()
    assert (record["order_id"], record["amount"], record["currency"]) == (
        "ORD-1",
        "120.50",
        "EUR",
    )
    schema = json.loads((ROOT / "schemas" / "outcome.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(record)


def test_an_outcome_written_before_amounts_were_added_stays_valid() -> None:
    schema = json.loads((ROOT / "schemas" / "outcome.schema.json").read_text())
    old = dict(schema["examples"][0])
    del old["amount"], old["currency"]
    jsonschema.Draft202012Validator(schema).validate(old)
    with pytest.raises(jsonschema.ValidationError):  # one without the other
        jsonschema.Draft202012Validator(schema).validate({**old, "amount": "1.00"})


def test_an_abandonment_rules_conversions_add_up_its_revenue_per_group_and_currency() -> None:
    """The row's recovered revenue (row key "rr", docs/reports.md "Recovered revenue"):
    only the rules named as anchored on an abandonment, exact sums, and the row keeps
    it through a round trip."""
    state = CustomerState(customer_id=CID, partition=0)
    state.recent_firings = [
        RecentFiring(D, "browse_abandonment", 1, T0, "delivered"),
        RecentFiring(D, SP, 1, T0, "holdout"),
    ]
    out: list[Emission] = []
    attribute(
        state,
        D + HOUR,
        "ORD-1",
        5 * DAY,
        out,
        amount="0.10",
        currency="EUR",
        revenue_rules=frozenset({"browse_abandonment"}),
    )
    state.recent_firings.append(RecentFiring(D + DAY, "browse_abandonment", 2, T0, "delivered"))
    attribute(
        state,
        D + 2 * DAY,
        "ORD-2",
        5 * DAY,
        out,
        amount="0.20",
        currency="EUR",
        revenue_rules=frozenset({"browse_abandonment"}),
    )
    assert state.recovered == {"browse_abandonment": {"delivered": {"EUR": "0.30"}}}
    assert [c.amount for c in conversions(out)] == ["0.10", "0.10", "0.20"]
    row = state.to_dict()
    assert row["rr"] == {"browse_abandonment": {"delivered": {"EUR": "0.30"}}}
    assert CustomerState.from_dict(row).recovered == state.recovered
    assert "rr" not in CustomerState(customer_id=CID).to_dict()


def test_recovered_revenue_keeps_the_smallest_currency_codes_whatever_their_order() -> None:
    # Per rule and group the 2 smallest codes keep their sums, the rest go to XXX
    # (docs/reports.md "Recovered revenue": the row's bound, docs/budget.md).
    codes = [f"C{chr(65 + i // 26)}{chr(65 + i % 26)}" for i in range(20)]
    sums = []
    for order in (codes, codes[::-1], codes[7:] + codes[:7]):
        state = CustomerState(customer_id=CID)
        for code in order:
            state.add_recovered("cart_abandonment", "holdout", code, "1.5")
        sums.append(state.recovered["cart_abandonment"]["holdout"])
    assert sums[0] == sums[1] == sums[2]
    assert sums[0] == {"CAA": "1.5", "CAB": "1.5", "XXX": "27.0"}
