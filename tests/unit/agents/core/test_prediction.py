"""The closed forms a worker will score customers with (docs/prediction.md): P(alive),
the crossing instant, expected orders (with the core's own 2F1) and Gamma-Gamma's
expected order value, against scipy and against a numeric root."""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from decimal import Decimal, localcontext
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.special import hyp2f1 as scipy_hyp2f1

from agents.core import prediction
from agents.core.prediction import (
    MICROS_PER_MINUTE,
    UNIT_MICROS,
    CrossingSince,
    GammaGammaParams,
    ModelKind,
    NbdParams,
    TimeUnit,
    crossing_at,
    crossing_time,
    expected_order_value,
    expected_orders,
    hyp2f1,
    p_alive,
)

# The paper's CDNOW estimates (Fader, Hardie & Lee 2005), weeks.
CDNOW = NbdParams("bgnbd", r=0.243, alpha=4.414, a=0.793, b=2.426)
T0 = 1_700_000_000_000_000

positive = st.floats(min_value=0.05, max_value=20.0)
params_st = st.builds(
    NbdParams,
    kind=st.sampled_from(["bgnbd", "mbgnbd"]),
    r=positive,
    alpha=st.floats(min_value=0.1, max_value=100.0),
    a=positive,
    b=positive,
    unit=st.sampled_from(["day", "week"]),
)


def test_the_core_imports_neither_scipy_nor_numpy() -> None:
    tree = ast.parse(Path(prediction.__file__).read_text())
    roots = {
        name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in (
            [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        )
    }
    assert not roots & {"scipy", "numpy"}, roots


@pytest.mark.parametrize(
    ("a", "b", "c", "z"),
    [(1.2, 3.4, 5.6, 0.5), (0.3, -0.7, 2.1, 0.9), (50, 60, 109, 0.75), (2, 3, 4, -0.9)],
)
def test_hyp2f1_matches_scipy_on_fixed_points(a: float, b: float, c: float, z: float) -> None:
    assert hyp2f1(a, b, c, z) == pytest.approx(scipy_hyp2f1(a, b, c, z), rel=1e-12)


@settings(max_examples=300, deadline=None)
@given(
    st.floats(min_value=-3.0, max_value=40.0),
    st.floats(min_value=-3.0, max_value=40.0),
    st.floats(min_value=0.05, max_value=80.0),
    st.floats(min_value=-0.95, max_value=0.99),
)
def test_hyp2f1_matches_scipy(a: float, b: float, above: float, z: float) -> None:
    # The domain expected_orders uses: c above both a and b (docs/prediction.md).
    c = max(a, b, 0.0) + above
    expected = scipy_hyp2f1(a, b, c, z)
    assume(math.isfinite(expected) and abs(expected) < 1e200)
    # 1e-8: scipy itself is off by 1.3e-9 at (14, 14, 29, 0.90625) - see the exact
    # sum below - so a tighter bound would test scipy, not the series.  Where scipy
    # drifts further (1.1e-8 at (19, 18, 39, 0.9375)), the series is held to the sum
    # in 80-digit decimals instead.
    found = hyp2f1(a, b, c, z)
    if found != pytest.approx(expected, rel=1e-8, abs=1e-12):
        assert found == pytest.approx(_decimal_2f1(a, b, c, z), rel=1e-9, abs=1e-12)


def _decimal_2f1(a: float, b: float, c: float, z: float) -> float:
    """2F1 by its series in 80-digit decimals, summed until the terms left are below
    1e-40 of the sum (past the largest term); the oracle where scipy drifts."""
    with localcontext(prec=80):
        da, db, dc, dz = Decimal(a), Decimal(b), Decimal(c), Decimal(z)
        term = total = Decimal(1)
        for n in range(500_000):
            term *= (da + n) * (db + n) / ((dc + n) * (n + 1)) * dz
            total += term
            if n > 2 * (abs(a) + abs(b) + abs(c)) + 2 and abs(term) < abs(total) * Decimal("1e-40"):
                break
        return float(total)


def test_the_decimal_oracle_agrees_with_the_series_where_scipy_drifts() -> None:
    exact = _decimal_2f1(19.0, 18.0, 39.0, 0.9375)
    assert exact == pytest.approx(8139135.2424131556, rel=1e-15)
    assert hyp2f1(19.0, 18.0, 39.0, 0.9375) == pytest.approx(exact, rel=1e-9)
    assert scipy_hyp2f1(19.0, 18.0, 39.0, 0.9375) != pytest.approx(exact, rel=1e-8)


def test_hyp2f1_matches_an_exact_sum_where_scipy_drifts() -> None:
    # The series summed in exact fractions (300 terms: the rest is far below 1e-12).
    a, b, c, z = Fraction(14), Fraction(14), Fraction(29), Fraction(29, 32)
    term, total = Fraction(1), Fraction(1)
    for n in range(300):
        term *= (a + n) * (b + n) / ((c + n) * (n + 1)) * z
        total += term
    assert hyp2f1(14, 14, 29, 0.90625) == pytest.approx(float(total), rel=1e-12)


def test_hyp2f1_refuses_what_its_series_cannot_give() -> None:
    with pytest.raises(ValueError):
        hyp2f1(1, 1, 2, 1.0)
    with pytest.raises(ValueError):
        hyp2f1(1, 1, -2, 0.5)


def test_p_alive_follows_the_papers() -> None:
    # BG/NBD: no repeat order = alive for ever; MBG/NBD lets a one-time buyer go.
    assert p_alive(CDNOW, 0, 0.0, 38.86) == 1.0
    mbg = NbdParams("mbgnbd", CDNOW.r, CDNOW.alpha, CDNOW.a, CDNOW.b)
    assert p_alive(mbg, 0, 0.0, 38.86) < 1.0
    # 1 / (1 + a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x)) by hand, x=2, t_x=30.43, T=38.86.
    odds = 0.793 / 3.426 * ((4.414 + 38.86) / (4.414 + 30.43)) ** 2.243
    assert p_alive(CDNOW, 2, 30.43, 38.86) == pytest.approx(1 / (1 + odds), rel=1e-12)
    # A customer who just ordered is likelier alive than one silent for months.
    assert p_alive(CDNOW, 2, 30.43, 31) > p_alive(CDNOW, 2, 30.43, 60)


def _expected_plain(p: NbdParams, x: int, t_x: float, T: float, t: float) -> float:
    """The papers' form, with scipy's 2F1 (lifetimes' reading of both)."""
    r, al, a, b = p.r, p.alpha, p.a, p.b
    z = t / (al + T + t)
    if p.kind == "bgnbd":
        lead = (a + b + x - 1) / (a - 1)
        hyp = scipy_hyp2f1(r + x, b + x, a + b + x - 1, z)
        odds = (x > 0) * a / (b + x - 1) if x > 0 else 0.0
    else:
        lead = (a + b + x) / (a - 1)
        hyp = scipy_hyp2f1(r + x, b + x + 1, a + b + x, z)
        odds = a / (b + x)
    num = lead * (1 - ((al + T) / (al + T + t)) ** (r + x) * hyp)
    return float(num / (1 + odds * ((al + T) / (al + t_x)) ** (r + x)))


def test_expected_orders_for_the_papers_customer() -> None:
    # 39 weeks ahead for a customer with 2 repeat weeks at 30.43 of 38.86.
    assert expected_orders(CDNOW, 2, 30.43, 38.86, 39) == pytest.approx(1.226, abs=5e-4)
    assert expected_orders(CDNOW, 2, 30.43, 38.86, 0) == 0.0


@settings(max_examples=200, deadline=None)
@given(
    params_st,
    st.integers(min_value=0, max_value=30),
    st.floats(min_value=0.0, max_value=1.0),
    st.floats(min_value=0.0, max_value=100.0),
    st.floats(min_value=0.1, max_value=100.0),
)
def test_expected_orders_matches_the_plain_form(
    params: NbdParams, x: int, share: float, T: float, t: float
) -> None:
    assume(abs(params.a - 1) > 0.05)
    t_x = share * T if x > 0 else 0.0
    expected = _expected_plain(params, x, t_x, T, t)
    assume(math.isfinite(expected))
    assert expected_orders(params, x, t_x, T, t) == pytest.approx(expected, rel=1e-7, abs=1e-10)


def test_expected_orders_of_a_daily_buyer_do_not_overflow() -> None:
    daily = NbdParams("mbgnbd", r=2.0, alpha=3.0, a=0.5, b=4.0, unit="day")
    value = expected_orders(daily, 3000, 3000.0, 3001.0, 90)
    assert math.isfinite(value) and 50 < value < 120


def _numeric_root(params: NbdParams, x: int, t_x: float, p: float) -> float:
    """P(alive) = p by bisection on T over (-alpha, inf): it falls monotonically in T."""
    lo, hi = -params.alpha + 1e-12, max(t_x, 1.0)
    while p_alive(params, x, t_x, hi) > p:
        hi = hi * 2 + 1
    lo_val = lo
    for _ in range(400):
        mid = (lo_val + hi) / 2
        if _p_alive_any(params, x, t_x, mid) > p:
            lo_val = mid
        else:
            hi = mid
    return (lo_val + hi) / 2


def _p_alive_any(params: NbdParams, x: int, t_x: float, T: float) -> float:
    """P(alive) read at any T > -alpha (the closed form is defined there; the
    core's check wants T >= t_x)."""
    c = params.a / (params.b + x - (1 if params.kind == "bgnbd" else 0))
    return 1 / (1 + c * ((params.alpha + T) / (params.alpha + t_x)) ** (params.r + x))


@settings(max_examples=300, deadline=None)
@given(
    params_st,
    st.integers(min_value=0, max_value=40),
    st.floats(min_value=0.0, max_value=200.0),
    st.floats(min_value=0.01, max_value=0.99),
)
def test_the_closed_form_crossing_is_the_numeric_root(
    params: NbdParams, x: int, t_x: float, p: float
) -> None:
    if x == 0:
        t_x = 0.0
    root = crossing_time(params, x, t_x, p)
    if params.kind == "bgnbd" and x == 0:
        assert root is None
        return
    assert root is not None
    numeric = _numeric_root(params, x, t_x, p)
    assume(numeric < 1e7)
    assert root == pytest.approx(numeric, rel=1e-9, abs=1e-9)


@settings(max_examples=300, deadline=None)
@given(
    params_st,
    st.integers(min_value=0, max_value=40),
    st.integers(min_value=0, max_value=400 * 86_400_000_000),
    st.floats(min_value=0.01, max_value=0.99),
)
def test_the_crossing_instant_is_rounded_up_to_the_minute_never_before_the_root(
    params: NbdParams, x: int, span: int, p: float
) -> None:
    first = T0 + 123_456_789  # not on a minute
    last = first + span if x > 0 else first
    t_x = (last - first) / UNIT_MICROS[params.unit] if x > 0 else 0.0
    found = crossing_at(params, x, first, last, p, since=last)
    if params.kind == "bgnbd" and x == 0:
        assert found.status == "never"
        return
    root_at = first + _numeric_root(params, x, t_x, p) * UNIT_MICROS[params.unit]
    assume(abs(root_at - last) > 1_000)  # not a tie with the anchor at float precision
    if root_at <= last:
        assert found.status == "crossed" and found.at is None
        return
    assert found.status == "at" and found.at is not None
    assert found.at % MICROS_PER_MINUTE == 0
    # Read to the millisecond before the minute is taken: at most half of one early.
    slack = 500 + max(1.0, abs(root_at) * 1e-12)
    assert root_at - slack <= found.at < root_at + MICROS_PER_MINUTE + slack


def test_a_threshold_passed_before_the_instant_asked_about_is_crossed() -> None:
    mbg = NbdParams("mbgnbd", r=0.5, alpha=6.0, a=0.9, b=1.6)
    ahead = crossing_at(mbg, 1, T0, T0 + UNIT_MICROS["week"], 0.2, since=T0 + UNIT_MICROS["week"])
    assert ahead.status == "at" and ahead.at is not None
    # The same threshold seen from after its crossing (a model switch, say): skipped.
    later = crossing_at(mbg, 1, T0, T0 + UNIT_MICROS["week"], 0.2, since=ahead.at)
    assert later.status == "crossed"
    with pytest.raises(ValueError):
        crossing_time(mbg, 1, 1.0, 1.0)


def test_gamma_gamma_shrinks_a_customers_mean_towards_the_population() -> None:
    g = GammaGammaParams(p=6.25, q=3.74, v=15.44)
    population = 6.25 * 15.44 / 2.74
    assert expected_order_value(g, 0, 0.0) == pytest.approx(population)
    one = expected_order_value(g, 1, 100.0)
    many = expected_order_value(g, 50, 100.0)
    assert population < one < many < 100.0
    with pytest.raises(ValueError):
        expected_order_value(GammaGammaParams(1.0, 0.9, 1.0), 1, 1.0)


# --- the fast path (docs/performance.md "The core fast paths") ------------------------


def _plain_after(params: NbdParams, x: int, first: int, last: int, p: float) -> int | None:
    """What CrossingSince replaced: crossing_at asked at the last order, as a duration."""
    crossing = crossing_at(params, x, first, last, p, last)
    if crossing.at is not None:
        return crossing.at - last
    return 0 if crossing.status == "crossed" else None


def _outcome(f: Callable[[], int | None]) -> object:
    try:
        return f()
    except (OverflowError, ValueError) as exc:
        return type(exc)


@settings(max_examples=500)
@given(
    kind=st.sampled_from(["bgnbd", "mbgnbd"]),
    unit=st.sampled_from(["day", "week"]),
    r=st.floats(1e-3, 50.0),
    alpha=st.floats(1e-3, 500.0),
    a=st.floats(1e-3, 20.0),
    b=st.floats(1e-3, 20.0),
    p=st.floats(0.001, 0.999),
    x=st.integers(-1, 400),
    first=st.integers(0, 10**17),
    gap=st.integers(0, 10**16),
)
def test_the_crossing_since_the_last_order_is_crossing_at_to_the_microsecond(
    kind: ModelKind,
    unit: TimeUnit,
    r: float,
    alpha: float,
    a: float,
    b: float,
    p: float,
    x: int,
    first: int,
    gap: int,
) -> None:
    """A churn_risk step computes its crossing with constants worked out once: the
    same duration as crossing_at (or the same error) for any model and customer, so
    a due time does not move by a minute."""
    params = NbdParams(kind, r, alpha, a, b, unit)
    last = first + gap
    fast = _outcome(lambda: CrossingSince(params, p).after(x, first, last))
    assert fast == _outcome(lambda: _plain_after(params, x, first, last, p))
