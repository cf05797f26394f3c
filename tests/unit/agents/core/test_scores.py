"""A customer's scores as the lookup, read model and reports show them
(docs/prediction.md "Scores"): they decay with the instant asked about, count
repeat order *days*, and are absent without a model or an order."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from agents.core.prediction import (
    MICROS_PER_DAY,
    UNIT_MICROS,
    GammaGammaParams,
    NbdParams,
    expected_order_value,
    expected_orders,
    p_alive,
)
from agents.core.scores import ScoreInputs, inputs_of, score_inputs, scores
from agents.core.state import CustomerState
from tests.unit.agents.factories import purchase

WEEK = UNIT_MICROS["week"]
T0 = 1_700_000_000_000_000 - 1_700_000_000_000_000 % MICROS_PER_DAY  # a UTC midnight
MBG = NbdParams("mbgnbd", r=0.5248, alpha=6.183, a=0.8914, b=1.614)
BG = NbdParams("bgnbd", r=0.2426, alpha=4.414, a=0.7929, b=2.426)
USD = GammaGammaParams(p=6.25, q=3.744, v=15.44)


@dataclass
class Model:
    version: str = "3f2a9c1b7d4e"
    time_unit: str = "week"
    kinds: dict[str, NbdParams] = field(default_factory=lambda: {"mbgnbd": MBG, "bgnbd": BG})
    gamma_gamma: dict[str, GammaGammaParams] = field(default_factory=lambda: {"USD": USD})


def customer(*times: int, amount: str = "20.00") -> CustomerState:
    """A customer whose orders at ``times`` (USD) were folded as the engine folds them."""
    state = CustomerState("c-1")
    for t in times:
        state.apply(purchase("c-1", t, amount=amount, currency="USD"))
    return state


def test_scores_are_the_closed_forms_at_the_instant_asked() -> None:
    # Orders on days 0, 14 (twice: one order day) and 28: x = 2 repeat order days.
    state = customer(
        T0,
        T0 + 14 * MICROS_PER_DAY,
        T0 + 14 * MICROS_PER_DAY + 3600 * 10**6,
        T0 + 28 * MICROS_PER_DAY,
        amount="30",
    )
    as_of = T0 + 70 * MICROS_PER_DAY
    out = scores(state, Model(), as_of)
    assert out is not None
    t_x, T = 4.0, 10.0  # weeks
    assert out["model_version"] == "3f2a9c1b7d4e"
    assert out["as_of"] == "2024-01-23T00:00:00Z"
    assert out["kind"] == "mbgnbd"
    assert out["p_alive"] == pytest.approx(p_alive(MBG, 2, t_x, T), abs=1e-6)
    assert out["p_alive_by_kind"]["bgnbd"] == pytest.approx(p_alive(BG, 2, t_x, T), abs=1e-6)
    assert out["expected_orders_30d"] == pytest.approx(
        expected_orders(MBG, 2, t_x, T, 30 / 7), abs=1e-6
    )
    assert out["expected_orders_90d"] > out["expected_orders_30d"] > 0
    # 4 orders, 120 USD: a mean of 30 over x = 2 repeat order days.
    assert out["predicted_value"] == {"USD": round(expected_order_value(USD, 2, 30.0), 2)}


def test_a_score_decays_while_the_customer_does_not_order() -> None:
    state = customer(T0, T0 + 7 * MICROS_PER_DAY)
    soon = scores(state, Model(), T0 + 10 * MICROS_PER_DAY)
    late = scores(state, Model(), T0 + 200 * MICROS_PER_DAY)
    assert soon is not None and late is not None
    assert late["p_alive"] < soon["p_alive"]
    assert late["expected_orders_90d"] < soon["expected_orders_90d"]


def test_no_score_without_a_model_or_an_order_or_a_model_kind() -> None:
    assert scores(customer(T0), None, T0) is None
    assert scores(CustomerState("c-0"), Model(), T0) is None
    assert scores(customer(T0), Model(kinds={}), T0) is None


def test_a_model_with_one_kind_shows_that_kind_and_day_units_count_days() -> None:
    inputs = ScoreInputs(2, T0, T0 + 3 * MICROS_PER_DAY, {}, {})
    day_bg = NbdParams("bgnbd", r=0.2426, alpha=4.414 * 7, a=0.7929, b=2.426, unit="day")
    out = score_inputs(
        inputs, Model(time_unit="day", kinds={"bgnbd": day_bg}), T0 + 10 * MICROS_PER_DAY
    )
    assert out is not None
    assert out["kind"] == "bgnbd" and list(out["p_alive_by_kind"]) == ["bgnbd"]
    assert out["p_alive"] == pytest.approx(p_alive(day_bg, 1, 3.0, 10.0), abs=1e-6)
    assert out["expected_orders_30d"] == pytest.approx(
        expected_orders(day_bg, 1, 3.0, 10.0, 30.0), abs=1e-6
    )
    assert out["predicted_value"] == {}


def test_a_clock_behind_the_last_order_scores_at_the_last_order() -> None:
    state = customer(T0, T0 + 7 * MICROS_PER_DAY)
    behind = scores(state, Model(), T0)
    at = scores(state, Model(), T0 + 7 * MICROS_PER_DAY)
    assert behind is not None and at is not None
    assert behind["p_alive"] == at["p_alive"]


def test_inputs_need_every_order_day() -> None:
    one_day = inputs_of(customer(T0, T0 + 3600 * 10**6))
    assert one_day is not None and one_day.x == 0
    state = customer(T0, T0 + MICROS_PER_DAY)
    state.orders = 40  # more orders than the kept order times: not exact without order_days
    if not hasattr(state, "order_days"):
        assert inputs_of(state) is None
    else:
        found = inputs_of(state)
        assert found is not None and found.x == 1  # the state's own count of order days
