"""Retention reports (docs/reports.md "Reports") on small cases worked out by hand."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from agents.core.reports import (
    CustomerRow,
    ReportSettings,
    build_report,
    clv,
    crr,
    lift_percent,
    median,
    percentile,
)
from agents.core.settings import DAY
from agents.core.state import STAGES, CountKey
from agents.core.timeutil import TIME_MAX, to_micros


def t(y: int, m: int, d: int, h: int = 0) -> int:
    return to_micros(datetime(y, m, d, h, tzinfo=UTC))


def buyer(cid: str, first: int, *, orders: int = 1, **kw: Any) -> CustomerRow:
    return CustomerRow(customer_id=cid, orders=orders, first_order_at=first, **kw)


# --- the small formulas ----------------------------------------------------------------


def test_crr_of_the_spec_example_is_0_7917_not_the_published_0_85() -> None:
    # (E - N) / S0 = (1100 - 150) / 1200 = 950 / 1200
    value = crr(1200, 150, 1100)
    assert value is not None
    assert round(value, 4) == 0.7917
    assert round(value, 2) != 0.85


def test_crr_without_anyone_active_at_the_start_is_undefined() -> None:
    assert crr(0, 3, 3) is None


def test_clv_of_the_spec_example() -> None:
    assert clv(100, 4, 2) == 800


def test_lift_percent() -> None:
    assert lift_percent(0.30, 0.20) == pytest.approx(50.0)
    assert lift_percent(0.10, 0.20) == pytest.approx(-50.0)
    assert lift_percent(0.30, 0.0) is None
    assert lift_percent(None, 0.2) is None
    assert lift_percent(0.2, None) is None


def test_median_and_nearest_rank_percentiles() -> None:
    assert median([]) is None
    assert median([5.0]) == 5.0
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5
    xs = [float(x) for x in range(1, 11)]  # 1..10
    assert percentile(xs, 75) == 8.0  # ceil(7.5) = 8th value
    assert percentile(xs, 90) == 9.0
    assert percentile(xs, 100) == 10.0
    assert percentile([7.0], 90) == 7.0
    assert percentile([], 50) is None


# --- CRR per month -----------------------------------------------------------------------

DEC1, JAN1, FEB1, MAR1, APR1 = (
    t(2025, 12, 1),
    t(2026, 1, 1),
    t(2026, 2, 1),
    t(2026, 3, 1),
    t(2026, 4, 1),
)
CRR_AS_OF = t(2026, 3, 15)


def crr_rows() -> list[CustomerRow]:
    return [
        # a: one order on Dec 10, active until Mar 10
        buyer("a", t(2025, 12, 10), active_spans=((t(2025, 12, 10), t(2026, 3, 10)),)),
        # b: first order Jan 20 (new in January), 3 orders
        buyer("b", t(2026, 1, 20), orders=3, active_spans=((t(2026, 1, 20), t(2026, 4, 20)),)),
        # c: an order at the very first instant of December; span ends exactly at March 1
        buyer("c", DEC1, active_spans=((DEC1, MAR1),)),
        # d: active in December, lapsed through January, back on Feb 10
        buyer(
            "d",
            t(2025, 12, 5),
            orders=2,
            active_spans=((t(2025, 12, 5), t(2026, 1, 5)), (t(2026, 2, 10), t(2026, 3, 12))),
        ),
        # p: sessions only - not a buyer, in no count
        CustomerRow(customer_id="p"),
    ]


def test_crr_per_month_across_month_boundaries() -> None:
    report = build_report(crr_rows(), as_of=CRR_AS_OF)
    got = [(p["period"], p["s0"], p["n"], p["e"], p["crr"], p["partial"]) for p in report["crr"]]
    assert got == [
        # Dec: nobody active on Nov 30; a, c, d are new and active on Dec 31.
        ("2025-12", 0, 3, 3, None, False),
        # Jan: a, c, d active at the start; b new; d lapsed by Jan 31: (3 - 1) / 3
        ("2026-01", 3, 1, 3, 0.6667, False),
        # Feb: a, b, c at the start; nobody new; d is back, c's span runs to the
        # last microsecond of February: (4 - 0) / 3
        ("2026-02", 3, 0, 4, 1.3333, False),
        # Mar (to Mar 15): a, b, c, d at the start; only b still active: 1 / 4
        ("2026-03", 4, 0, 1, 0.25, True),
    ]


def test_a_span_ending_at_the_month_start_is_not_active_in_that_month() -> None:
    rows = [buyer("c", DEC1, active_spans=((DEC1, MAR1),))]
    march = build_report(rows, as_of=t(2026, 3, 20))["crr"][-1]
    assert (march["period"], march["s0"], march["e"]) == ("2026-03", 1, 0)
    assert march["crr"] == 0.0


def test_crr_rows_follow_the_data_not_the_calendar_span() -> None:
    # One order in January 1970, one in March 2026: five rows, not 675 months of
    # zeros (nor 24,288 from year 1) - the cost and the size of the report (and of
    # the summary the dashboard polls) follow the data (docs/reports.md "Reports").
    early, late = t(1970, 1, 15), t(2026, 3, 2)
    rows = [
        buyer("old", early, active_spans=((early, early + 90 * DAY),)),
        buyer("new", late, active_spans=((late, late + 90 * DAY),)),
    ]
    report = build_report(rows, as_of=CRR_AS_OF)
    got = [(p["period"], p["s0"], p["n"], p["e"]) for p in report["crr"]]
    assert got == [
        ("1970-01", 0, 1, 1),
        ("1970-02", 1, 0, 1),
        ("1970-03", 1, 0, 1),
        ("1970-04", 1, 0, 0),  # active at its start, lapsed by its end
        ("2026-03", 0, 1, 1),
    ]
    assert len(orjson.dumps(report)) < 4_000


def test_a_report_from_year_1_to_year_9999_has_a_row_per_month_with_data() -> None:
    first, last = t(1, 1, 1), t(9999, 12, 1)
    rows = [
        buyer("go_zero_time", first, active_spans=((first, first + 90 * DAY),)),
        buyer("late", last, active_spans=((last, last + 90 * DAY),)),
    ]
    report = build_report(rows, as_of=TIME_MAX)
    assert [p["period"] for p in report["crr"]] == [
        "0001-01", "0001-02", "0001-03", "0001-04", "9999-12"
    ]  # fmt: skip
    assert report["as_of"] == "9999-12-31T23:59:59.999999Z"
    assert [c["cohort"] for c in report["ttsp"]["cohorts"]] == ["0001-01", "9999-12"]


def test_crr_cost_follows_the_data() -> None:
    # 2,000 buyers spread over 1970-2025 and one in 9999: only the months with a
    # first order or activity are looked at, each by binary search, not every
    # buyer for each of the 96,000 calendar months in between.
    rows = [buyer(f"c{i}", t(1970 + i % 56, 1 + i % 12, 3), active_spans=()) for i in range(2000)]
    rows.append(buyer("z", t(9999, 1, 1), active_spans=((t(9999, 1, 1), t(9999, 4, 1)),)))
    started = time.process_time()
    report = build_report(rows, as_of=TIME_MAX)
    assert time.process_time() - started < 5
    assert sum(p["n"] for p in report["crr"]) == 2001
    assert len(report["crr"]) == 56 * 12 // 4 + 4  # only months with a first order or activity


# --- RPR ---------------------------------------------------------------------------------


def test_repeat_purchase_rate_counts_buyers_only() -> None:
    rpr = build_report(crr_rows(), as_of=CRR_AS_OF)["rpr"]
    # buyers a, b, c, d; repeaters b (3 orders) and d (2); p has no order
    assert rpr == {"buyers": 4, "repeaters": 2, "rate": 0.5}


def test_repeat_purchase_rate_without_buyers_is_null() -> None:
    report = build_report([CustomerRow(customer_id="p")], as_of=CRR_AS_OF)
    assert report["rpr"] == {"buyers": 0, "repeaters": 0, "rate": None}
    assert report["crr"] == [] and report["clv"] == []
    assert (report["customers"], report["buyers"]) == (1, 0)


# --- CLV ---------------------------------------------------------------------------------


def clv_rows() -> list[CustomerRow]:
    # Two buyers, 4 orders each of 100 EUR on average, observed for exactly one year
    # (the earliest first order to as_of): AOV 100, 4 orders per year.
    start = t(2025, 1, 1)
    return [
        buyer("x", start, orders=4, spend={"EUR": "400.00"}, order_currencies={"EUR": 4}),
        buyer(
            "y",
            start + 100 * DAY,
            orders=4,
            spend={"EUR": "350.00"},
            order_currencies={"EUR": 4},
        ),
        buyer(
            "z",
            start + 200 * DAY,
            orders=4,
            spend={"EUR": "250.00", "USD": "90.00"},
            order_currencies={"EUR": 2, "USD": 2},
        ),
    ]


def test_clv_100_x_4_x_2_is_800() -> None:
    # EUR: 400 + 350 + 250 = 1000 over 4 + 4 + 2 = 10 orders -> AOV 100;
    # 12 orders / 3 buyers / 1 year = 4 per year; lifetime 2 years.
    as_of = t(2025, 1, 1) + 365 * DAY
    (eur, usd) = build_report(clv_rows(), as_of=as_of)["clv"]
    assert (eur["currency"], eur["orders"], eur["average_order_value"]) == ("EUR", 10, 100.0)
    assert (eur["orders_per_year"], eur["lifetime_years"], eur["clv"]) == (4.0, 2.0, 800.0)
    assert (usd["currency"], usd["orders"], usd["average_order_value"], usd["clv"]) == (
        "USD",
        2,
        45.0,
        360.0,
    )


def test_clv_lifetime_is_a_setting_and_half_a_year_doubles_the_rate() -> None:
    as_of = t(2025, 1, 1) + 365 * DAY
    three = build_report(clv_rows(), as_of=as_of, settings=ReportSettings(clv_lifetime_years=3))
    assert three["clv"][0]["clv"] == 1200.0
    rows = [buyer("x", t(2025, 1, 1), orders=4, spend={"EUR": "400"}, order_currencies={"EUR": 4})]
    half = build_report(rows, as_of=t(2025, 1, 1) + 365 * DAY // 2)["clv"][0]
    assert (half["orders_per_year"], half["clv"]) == (8.0, 1600.0)


# --- lift ----------------------------------------------------------------------------------


def lift_rows() -> list[CustomerRow]:
    return [
        CustomerRow(
            customer_id="r1",
            decision_counts={
                CountKey("second_purchase", 1, "delivered"): 60,
                CountKey("second_purchase", 1, "holdout"): 100,
                CountKey("second_purchase", 1, "min_gap"): 7,
                CountKey("inactivity", 2, "delivered"): 10,
            },
            conversion_counts={
                CountKey("second_purchase", 1, "delivered"): 18,
                CountKey("second_purchase", 1, "holdout"): 20,
            },
        ),
        CustomerRow(
            customer_id="r2",
            decision_counts={
                CountKey("second_purchase", 1, "delivered"): 40,
                CountKey("inactivity", 2, "holdout"): 5,
                CountKey("overdue", 1, "opted_out"): 3,
            },
            conversion_counts={
                CountKey("second_purchase", 1, "delivered"): 12,
                CountKey("inactivity", 2, "delivered"): 1,
            },
        ),
    ]


def test_lift_per_rule_and_step_with_group_sizes() -> None:
    lift = {
        (x["rule"], x["step"]): x for x in build_report(lift_rows(), as_of=t(2026, 1, 1))["lift"]
    }
    sp = lift["second_purchase", 1]
    # delivered 30 / 100 = 0.3, holdout 20 / 100 = 0.2 -> (0.3 - 0.2) / 0.2 = +50 %
    assert sp["delivered"] == {"firings": 100, "conversions": 30, "rate": 0.3}
    assert sp["holdout"] == {"firings": 100, "conversions": 20, "rate": 0.2}
    assert sp["lift_percent"] == 50.0
    # holdout converted 0 of 5: a zero base, no lift
    inact = lift["inactivity", 2]
    assert inact["delivered"] == {"firings": 10, "conversions": 1, "rate": 0.1}
    assert inact["holdout"] == {"firings": 5, "conversions": 0, "rate": 0.0}
    assert inact["lift_percent"] is None
    # only suppressed firings: no group has any, no rate, no lift
    od = lift["overdue", 1]
    assert od["delivered"]["rate"] is None and od["holdout"]["rate"] is None
    assert od["lift_percent"] is None


def test_decision_totals_by_outcome() -> None:
    decisions = build_report(lift_rows(), as_of=t(2026, 1, 1))["decisions"]
    assert decisions["total"] == 60 + 100 + 7 + 10 + 40 + 5 + 3
    assert decisions["by_outcome"] == {
        "delivered": 110,
        "holdout": 105,
        "opted_out": 3,
        "outranked": 0,
        "min_gap": 7,
        "frequency_cap": 0,
    }


# --- TTSP ----------------------------------------------------------------------------------

TTSP_AS_OF = t(2026, 6, 1, 10)


def ttsp_rows() -> list[CustomerRow]:
    def two(cid: str, first: int, days: float | None) -> CustomerRow:
        second = None if days is None else first + int(days * DAY)
        return buyer(cid, first, orders=1 if days is None else 2, second_order_at=second)

    return [
        # cohort 2026-01, all at least 90 days old by June 1
        two("a", t(2026, 1, 5, 10), 10),
        two("b", t(2026, 1, 10, 10), 30),  # exactly 30 days: within 30
        two("c", t(2026, 1, 15, 10), 40),
        two("d", t(2026, 1, 20, 10), 100),
        two("e", t(2026, 1, 25, 10), None),
        # cohort 2026-05: f exactly 30 days before as_of (mature for 30), g too young
        two("f", t(2026, 5, 2, 10), 10),
        two("g", t(2026, 5, 20, 10), None),
    ]


def test_ttsp_per_first_order_cohort() -> None:
    ttsp = build_report(ttsp_rows(), as_of=TTSP_AS_OF)["ttsp"]
    jan, may = ttsp["cohorts"]
    # January: TTSP 10, 30, 40, 100 d -> median (30 + 40) / 2, p75 3rd of 4, p90 4th of 4
    assert jan == {
        "cohort": "2026-01",
        "first_time_buyers": 5,
        "repeaters": 4,
        "median_days": 35.0,
        "p75_days": 40.0,
        "p90_days": 100.0,
        "repeat_within": {"30": 0.4, "60": 0.6, "90": 0.6},
    }
    # May: f is mature for 30 days only, g for none.
    assert may == {
        "cohort": "2026-05",
        "first_time_buyers": 2,
        "repeaters": 1,
        "median_days": 10.0,
        "p75_days": 10.0,
        "p90_days": 10.0,
        "repeat_within": {"30": 1.0, "60": None, "90": None},
    }
    # Everyone: 10, 10, 30, 40, 100 -> median 30, p75 4th of 5, p90 5th of 5;
    # within 30: a, b, f of the six mature buyers (not g); 60/90: 3 of the five in January.
    assert ttsp["overall"] == {
        "first_time_buyers": 7,
        "repeaters": 5,
        "median_days": 30.0,
        "p75_days": 40.0,
        "p90_days": 100.0,
        "repeat_within": {"30": 0.5, "60": 0.6, "90": 0.6},
    }


def test_ttsp_histogram_buckets_are_lower_inclusive() -> None:
    first = t(2026, 1, 1)
    ttsp_days = [0, 7 - 1e-6, 7, 13.5, 30, 59, 60, 90, 179, 180, 400]
    rows = [
        buyer(f"h{i}", first, orders=2, second_order_at=first + round(d * DAY))
        for i, d in enumerate(ttsp_days)
    ]
    rows.append(buyer("single", first))
    histogram = build_report(rows, as_of=t(2027, 6, 1))["ttsp"]["histogram"]
    assert [(h["lower_days"], h["upper_days"], h["count"]) for h in histogram] == [
        (0, 7, 2),
        (7, 14, 2),
        (14, 30, 0),
        (30, 60, 2),
        (60, 90, 1),
        (90, 180, 2),
        (180, None, 2),
    ]
    assert sum(h["count"] for h in histogram) == len(ttsp_days)


# --- lifecycle and rendering -----------------------------------------------------------------


def test_lifecycle_stage_counts_include_every_stage() -> None:
    stages = ["new", "new", "repeat", "at_risk", "lapsed", "reactivated", "prospect"]
    rows = [CustomerRow(customer_id=f"s{i}", stage=s) for i, s in enumerate(stages)]
    lifecycle = build_report(rows, as_of=t(2026, 1, 1))["lifecycle"]
    assert lifecycle == {
        "prospect": 1,
        "new": 2,
        "repeat": 1,
        "at_risk": 1,
        "lapsed": 1,
        "reactivated": 1,
    }
    assert set(lifecycle) == set(STAGES)


# --- the lifecycle: funnel, recovered revenue, cancellations (docs/reports.md) ----------


def _at(text: str) -> int:
    return to_micros(datetime.fromisoformat(text).replace(tzinfo=UTC))


def test_the_funnel_counts_each_first_view_month_down_to_the_order() -> None:
    march, april = _at("2026-03-05T10:00:00"), _at("2026-04-30T23:59:59")
    rows = [
        CustomerRow("a", first_view_at=march),
        CustomerRow("b", first_view_at=march, first_cart_at=march + DAY),
        CustomerRow(
            "c",
            orders=1,
            first_order_at=april,
            first_view_at=march,
            first_cart_at=march,
            first_checkout_at=march,
        ),
        CustomerRow("d", first_view_at=april, first_cart_at=april),
        CustomerRow("e", orders=1, first_order_at=april),  # bought without a view: no cohort
    ]
    report = build_report(rows, as_of=_at("2026-06-01T00:00:00"))
    assert report["funnel"] == [
        {
            "cohort": "2026-03",
            "customers": 3,
            "carts": 2,
            "checkouts": 1,
            "orders": 1,
            "rates": {"carts": 0.6667, "checkouts": 0.3333, "orders": 0.3333},
        },
        {
            "cohort": "2026-04",
            "customers": 1,
            "carts": 1,
            "checkouts": 0,
            "orders": 0,
            "rates": {"carts": 1.0, "checkouts": 0.0, "orders": 0.0},
        },
    ]


def test_recovered_revenue_is_per_rule_and_group_with_the_groups_customers() -> None:
    delivered = {CountKey("cart_abandonment", 1, "delivered"): 1}
    rows = [
        CustomerRow(
            "a",
            decision_counts={**delivered, CountKey("cart_abandonment", 2, "delivered"): 1},
            recovered={"cart_abandonment": {"delivered": {"EUR": "30.10"}}},
        ),
        CustomerRow("b", decision_counts=delivered),  # fired, never bought
        CustomerRow(
            "c",
            decision_counts={CountKey("cart_abandonment", 1, "holdout"): 1},
            recovered={"cart_abandonment": {"holdout": {"EUR": "9.90", "USD": "5"}}},
        ),
        CustomerRow("d", decision_counts={CountKey("cart_abandonment", 1, "min_gap"): 1}),
    ]
    (block,) = build_report(rows, as_of=_at("2026-06-01T00:00:00"))["recovered_revenue"]
    assert block == {
        "rule": "cart_abandonment",
        "delivered": {"customers": 2, "revenue": {"EUR": "30.10"}, "per_customer": {"EUR": 15.05}},
        "holdout": {
            "customers": 1,
            "revenue": {"EUR": "9.90", "USD": "5"},
            "per_customer": {"EUR": 9.9, "USD": 5.0},
        },
    }


def test_cancellations_count_placed_orders_full_and_partial_and_refunds() -> None:
    t = _at("2026-03-05T10:00:00")
    rows = [
        CustomerRow("a", orders=3, first_order_at=t, cancelled_orders=1, refunded={"EUR": "10.5"}),
        CustomerRow("b", orders=0, cancelled_orders=1, refunded={"EUR": "4.5", "USD": "2"}),
        CustomerRow("c", orders=2, first_order_at=t, partial_cancels=2, refunded={"EUR": "1"}),
        CustomerRow("d", orders=4, first_order_at=t),
    ]
    report = build_report(rows, as_of=_at("2026-06-01T00:00:00"))
    assert report["cancellations"] == {
        "placed": 11,
        "full": 2,
        "partial": 2,
        "rate": 0.1818,
        "partial_rate": 0.1818,
        "refunded": {"EUR": "16.0", "USD": "2"},
    }


def test_a_report_without_lifecycle_inputs_has_none_of_their_blocks() -> None:
    t = _at("2026-03-05T10:00:00")
    report = build_report(
        [CustomerRow("a", orders=1, first_order_at=t)], as_of=_at("2026-06-01T00:00:00")
    )
    assert not {"funnel", "recovered_revenue", "cancellations"} & set(report)
