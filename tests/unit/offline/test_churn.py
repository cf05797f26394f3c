"""The reference's own P(alive) and crossing instant (agents/offline/churn.py) against
the engine's closed form (agents/core/prediction.py) and a bisection root
(docs/prediction.md "Crossing").

The two agree to the minute except where the exact root is itself a whole minute
(or the anchor): there the two formulas' last-bit errors may fall either side of
it, one minute apart.  Parameters like r = alpha = a = b = 1 with p = 0.25 put the
root of a one-time buyer at exactly two days: the reference says T0 + 2 days,
the engine (exp of a log, 3.0000000000000004) T0 + 2 days + 1 minute.
"""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.core import prediction
from agents.core.timeutil import MAX_DURATION, MICROS_PER_DAY
from agents.offline.churn import AT, CROSSED, NEVER, Model, crossing, p_alive, repeat_days

T0 = 1_772_445_600_000_000  # 2026-03-02T10:00:00Z
MINUTE = 60_000_000
CDNOW = Model("mbgnbd", 0.5248, 6.183, 0.8914, 1.614, "week")

models = st.builds(
    Model,
    st.sampled_from(["mbgnbd", "bgnbd"]),
    st.floats(0.05, 3.0),
    st.floats(0.5, 30.0),
    st.floats(0.05, 3.0),
    st.floats(0.05, 5.0),
    st.sampled_from(["day", "week"]),
)


def unit(model: Model) -> int:
    return MICROS_PER_DAY * (7 if model.unit == "week" else 1)


def engine_params(model: Model) -> prediction.NbdParams:
    kind: prediction.ModelKind = "mbgnbd" if model.kind == "mbgnbd" else "bgnbd"
    time_unit: prediction.TimeUnit = "week" if model.unit == "week" else "day"
    return prediction.NbdParams(kind, model.r, model.alpha, model.a, model.b, time_unit)


def test_two_orders_on_one_utc_day_are_one_order_day() -> None:
    day = MICROS_PER_DAY
    assert repeat_days([T0]) == 0
    assert repeat_days([T0, T0 + 3_600_000_000]) == 0  # 10:00 and 11:00 the same day
    assert repeat_days([T0, T0 + 14 * 3_600_000_000]) == 1  # 00:00 the next day
    assert repeat_days([T0, T0 + 3 * day, T0 + 3 * day, T0 + 9 * day]) == 2
    assert repeat_days([]) == 0


def test_a_one_time_buyer_crosses_under_mbgnbd_and_never_under_bgnbd() -> None:
    # c = a/b = 0.552 at x = 0: P(alive) just after the order is 1/1.552 = 0.644.
    assert p_alive(CDNOW, 0, T0, T0, T0) == 1 / (1 + 0.8914 / 1.614)
    assert crossing(CDNOW, 0.7, 0, T0, T0, T0).status == CROSSED
    due = crossing(CDNOW, 0.6, 0, T0, T0, T0)
    assert due.status == AT and due.at is not None
    assert due.at % MINUTE == 0 and due.at > T0
    bg = Model("bgnbd", 0.2426, 4.414, 0.7929, 2.426, "week")
    assert crossing(bg, 0.2, 0, T0, T0 + 3_600_000_000, T0 + 3_600_000_000).status == NEVER
    assert p_alive(bg, 0, T0, T0, T0 + 1000 * MICROS_PER_DAY) == 1.0


@settings(max_examples=400, deadline=None)
@given(
    models,
    st.floats(0.01, 0.99),
    st.integers(0, 40),
    st.integers(0, 400 * MICROS_PER_DAY),
)
def test_the_crossing_is_the_engines_and_the_first_minute_below_the_threshold(
    model: Model, p: float, x: int, span: int
) -> None:
    last = T0 + (span if x else 0)
    due = crossing(model, p, x, T0, last, last)
    engine = prediction.crossing_at(engine_params(model), x, T0, last, p, last)
    if engine.at is not None and engine.at - last > MAX_DURATION:
        # The step's cap (agents/core/rules/steps.py): more than 100 years is never.
        engine = prediction.Crossing("never")
    if (due.status, due.at) != (engine.status, engine.at):
        # Two float formulas of one root differ by ulps: they can round to two minutes
        # (or say crossed and at) only when the root is a whole minute (or the anchor)
        # to within the float's own grain there - what "nice" parameters give (module doc).
        root = prediction.crossing_time(engine_params(model), x, (last - T0) / unit(model), p)
        assert root is not None
        offset = root * unit(model)
        assert min(offset % MINUTE, -offset % MINUTE) <= max(1.0, 1e-12 * offset), (due, engine)
        return
    if due.status == AT:
        assert due.at is not None
        # Rounded up to the minute: at or below p at it, above p a minute before
        # (allowing for the float noise of two formulas near the root).
        assert p_alive(model, x, T0, last, due.at) <= p + 1e-9
        assert p_alive(model, x, T0, last, due.at - MINUTE) > p - 1e-9
    elif due.status == CROSSED:
        assert p_alive(model, x, T0, last, last) <= p + 1e-9


def test_p_alive_matches_the_engines_on_a_grid() -> None:
    params = engine_params(CDNOW)
    for x in (0, 1, 5):
        last = T0 + (20 * MICROS_PER_DAY if x else 0)
        for weeks in (0, 3, 30, 300):
            at = last + weeks * 7 * MICROS_PER_DAY
            t_x = (last - T0) / (7 * MICROS_PER_DAY)
            big_t = (at - T0) / (7 * MICROS_PER_DAY)
            assert math.isclose(
                p_alive(CDNOW, x, T0, last, at),
                prediction.p_alive(params, x, t_x, big_t),
                rel_tol=1e-12,
            )


def test_a_root_on_a_whole_minute_is_that_minute_in_the_reference() -> None:
    """The boundary case in the module doc: 1/(1 + (1+T)) = 0.25 at T = 2 days."""
    ones = Model("mbgnbd", 1.0, 1.0, 1.0, 1.0, "day")
    assert crossing(ones, 0.25, 0, T0, T0, T0).at == T0 + 2 * MICROS_PER_DAY
    engine = prediction.crossing_at(engine_params(ones), 0, T0, T0, 0.25, T0)
    assert engine.at in (T0 + 2 * MICROS_PER_DAY, T0 + 2 * MICROS_PER_DAY + MINUTE)


def test_a_crossing_past_100_years_or_beyond_a_float_is_never() -> None:
    slow = Model("mbgnbd", 0.3, 1.0, 0.01, 100.0, "week")  # c = 1e-4
    assert crossing(slow, 0.01, 0, T0, T0, T0).status == NEVER  # ~1e26 years
    slower = Model("mbgnbd", 0.01, 1.0, 0.01, 100.0, "week")
    assert crossing(slower, 0.01, 0, T0, T0, T0).status == NEVER  # a float overflows
    # 0.5 on the same model: inside 100 years.
    assert crossing(Model("mbgnbd", 0.3, 1.0, 0.5, 1.0, "week"), 0.2, 0, T0, T0, T0).status == AT
