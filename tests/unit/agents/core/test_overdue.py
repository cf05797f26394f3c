"""The cadence-aware ``overdue`` rule (docs/rules.md "Rules").

Customers with >= 3 orders get one nudge when no order came for k x the median
gap between their orders (k = 2, never sooner than 7 days after the last order);
any order resets it.  Gaps below are chosen so the median is easy to see.
"""

from __future__ import annotations

import statistics
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.core.emissions import Emission, Firing
from agents.core.engine import Engine, overdue_threshold
from agents.core.settings import DAY, HOUR, CoreSettings, LadderSettings
from agents.core.state import CustomerState
from agents.core.timeutil import duration_record
from tests.unit.agents.factories import T0, at, feed_in_time_order, purchase, session

CID = "cus_000481"  # not in the default 10% control group (the engine tests use it too)
OVERDUE = "overdue"

Fired = tuple[int, int, int]  # (anchor_at, threshold, due_at)


def engine(**overrides: Any) -> Engine:
    """Only the overdue rule, guardrails out of the way."""
    return Engine(
        CoreSettings(
            second_purchase=LadderSettings("second_purchase", (7 * DAY,), enabled=False),
            inactivity=LadderSettings("inactivity", (14 * DAY,), enabled=False),
            holdout_percent=0.0,
            **overrides,
        )
    )


def orders_on(*days: float) -> list[Any]:
    return [purchase(CID, at(days=d), f"ORD-{i}") for i, d in enumerate(days)]


def run(events: list[Any], until: int, eng: Engine | None = None) -> list[Emission]:
    eng = eng or engine()
    state = CustomerState(customer_id=CID, partition=0)
    return feed_in_time_order(eng, state, events, until)


def overdue(emitted: list[Emission]) -> list[Fired]:
    return [
        (f.anchor_at, f.threshold, f.due_at)
        for f in emitted
        if isinstance(f, Firing) and f.rule == OVERDUE
    ]


# --- the threshold -------------------------------------------------------------------


def test_threshold_irregular_gaps_use_the_median() -> None:
    # gaps 3 d, 10 d, 4 d -> median 4 d -> 2 x 4 d = 8 d (above the 7 d floor)
    times = [at(days=d) for d in (0, 3, 13, 17)]
    assert overdue_threshold(times, 2.0, 7 * DAY) == 8 * DAY


def test_threshold_short_gaps_are_lifted_to_the_floor() -> None:
    times = [at(days=d) for d in (0, 1, 2)]  # gaps 1 d, 1 d -> 2 d < 7 d
    assert overdue_threshold(times, 2.0, 7 * DAY) == 7 * DAY


def test_threshold_even_number_of_gaps_takes_the_mean_of_the_middle_two() -> None:
    # gaps 2, 6, 8, 3 d -> sorted 2, 3, 6, 8 -> (3 + 6) / 2 = 4.5 d -> 9 d
    times = [at(days=d) for d in (0, 2, 8, 16, 19)]
    assert overdue_threshold(times, 2.0, 7 * DAY) == 9 * DAY


def test_threshold_multiplier_and_floor_are_parameters() -> None:
    times = [at(days=d) for d in (0, 5, 10)]  # median 5 d
    assert overdue_threshold(times, 3.0, 7 * DAY) == 15 * DAY
    assert overdue_threshold(times, 2.0, 20 * DAY) == 20 * DAY
    assert overdue_threshold(times, 1.5, 1 * DAY) == 7 * DAY + 12 * HOUR


@settings(max_examples=200, deadline=None)
@given(
    gaps=st.lists(st.integers(0, 60 * DAY), min_size=1, max_size=12),
    floor=st.integers(0, 30 * DAY),
)
def test_threshold_is_twice_the_median_gap_or_the_floor(gaps: list[int], floor: int) -> None:
    times = [T0]
    for g in gaps:
        times.append(times[-1] + g)
    # statistics.median of ints gives x.5 for an even count: a microsecond floored.
    expected = max(floor, 2 * int(statistics.median(gaps)))
    assert overdue_threshold(times, 2.0, floor) == expected


# --- end to end ------------------------------------------------------------------------


def test_fires_once_at_twice_the_median_gap_after_the_last_order() -> None:
    emitted = run(orders_on(0, 3, 13, 17), at(days=400))
    assert overdue(emitted) == [(at(days=17), 8 * DAY, at(days=25))]
    (firing,) = [f for f in emitted if isinstance(f, Firing)]
    assert (firing.step, firing.outcome) == (1, "delivered")
    assert duration_record(firing.threshold).iso == "P8D"
    assert firing.context["order_count"] == 4
    # T0 is 2026-03-02: the anchor, day 17, is 2026-03-19.
    assert "8 days" in firing.reason() and "2026-03-19" in firing.reason()


def test_regular_buyer_with_short_gaps_is_due_after_the_7_day_floor() -> None:
    assert overdue(run(orders_on(0, 1, 2), at(days=100))) == [(at(days=2), 7 * DAY, at(days=9))]


def test_even_number_of_gaps() -> None:
    # The third order's anchor (day 8, due day 16) is cancelled by the order at
    # day 16; day 16's (median 6 d, due day 28) by day 19; day 19's: median 4.5 d.
    assert overdue(run(orders_on(0, 2, 8, 16, 19), at(days=100))) == [
        (at(days=19), 9 * DAY, at(days=28))
    ]


def test_an_order_before_the_due_time_cancels_and_re_anchors() -> None:
    # 0, 3, 13: median 6.5 d -> due day 26; the order on day 20 comes first.
    # New anchor day 20: gaps 3, 10, 7 -> median 7 d -> due day 34.
    assert overdue(run(orders_on(0, 3, 13), at(days=25))) == []
    assert overdue(run(orders_on(0, 3, 13), at(days=26))) == [(at(days=13), 13 * DAY, at(days=26))]
    assert overdue(run(orders_on(0, 3, 13, 20), at(days=100))) == [
        (at(days=20), 14 * DAY, at(days=34))
    ]


def test_an_order_exactly_at_the_due_time_counts_first_no_firing() -> None:
    # Due day 26 (as above); the order dated day 26 is counted before the step.
    # New anchor day 26: gaps 3, 10, 13 -> median 10 d -> due day 46.
    assert overdue(run(orders_on(0, 3, 13, 26), at(days=100))) == [
        (at(days=26), 20 * DAY, at(days=46))
    ]


def test_an_order_a_microsecond_after_the_due_time_comes_too_late() -> None:
    events = [*orders_on(0, 3, 13), purchase(CID, at(days=26) + 1, "ORD-late")]
    fired = overdue(run(events, at(days=26) + 1))
    assert fired == [(at(days=13), 13 * DAY, at(days=26))]


def test_sessions_do_not_reset_the_overdue_rule() -> None:
    events = [*orders_on(0, 3, 13), session(CID, at(days=20))]
    assert overdue(run(events, at(days=100))) == [(at(days=13), 13 * DAY, at(days=26))]


def test_fewer_than_three_orders_never_fire() -> None:
    assert overdue(run(orders_on(0, 3), at(days=1000))) == []
    assert overdue(run(orders_on(0), at(days=1000))) == []


def test_one_step_then_silent_until_the_next_order() -> None:
    eng = engine()
    state = CustomerState(customer_id=CID, partition=0)
    for e in orders_on(0, 1, 2):
        eng.ingest(state, e, e.occurred_at)
    assert overdue(eng.advance(state, at(days=500))) == [(at(days=2), 7 * DAY, at(days=9))]
    assert eng.next_due(state) is None
    # The next order restarts it: gaps 1, 1, 498 d -> median 1 d -> floor 7 d.
    eng.ingest(state, purchase(CID, at(days=500), "ORD-back"), at(days=500))
    assert overdue(eng.advance(state, at(days=600))) == [(at(days=500), 7 * DAY, at(days=507))]


def test_two_orders_at_the_same_instant_are_a_zero_gap() -> None:
    # Orders at days 0, 10, 10: gaps 10 d and 0 -> median 5 d -> 10 d -> due day 20.
    assert overdue(run(orders_on(0, 10, 10), at(days=100))) == [
        (at(days=10), 10 * DAY, at(days=20))
    ]


@pytest.mark.parametrize(
    ("overrides", "days", "expected"),
    [
        # min_orders 2: two orders 2 d apart, x3 = 6 d, floor 1 d -> due day 8
        (
            {"overdue_min_orders": 2, "overdue_multiplier": 3.0, "overdue_floor": DAY},
            (0, 2),
            [(2, 6, 8)],
        ),
        # floor 10 d beats 2 x 1 d
        ({"overdue_floor": 10 * DAY}, (0, 1, 2), [(2, 10, 12)]),
        # min_orders 4: three orders are not enough
        ({"overdue_min_orders": 4}, (0, 3, 13), []),
        ({"overdue_min_orders": 4}, (0, 3, 13, 17), [(17, 8, 25)]),
        # disabled
        ({"overdue_enabled": False}, (0, 3, 13, 17), []),
    ],
)
def test_multiplier_floor_and_minimum_orders_are_configurable(
    overrides: dict[str, Any], days: tuple[int, ...], expected: list[tuple[int, int, int]]
) -> None:
    got = overdue(run(orders_on(*days), at(days=400), engine(**overrides)))
    assert got == [(at(days=a), th * DAY, at(days=d)) for a, th, d in expected]


@pytest.mark.parametrize(
    ("overrides", "days", "threshold"),
    [
        ({"overdue_multiplier": 3.0}, (0, 5, 10), 15),  # three times, not twice
        ({}, (0, 1, 2), 7),  # the 7-day floor: seven times their 1-day gap
    ],
)
def test_reason_does_not_claim_twice_the_usual_gap_when_it_is_not(
    overrides: dict[str, Any], days: tuple[int, ...], threshold: int
) -> None:
    eng = engine(**overrides)
    (firing,) = [f for f in run(orders_on(*days), at(days=100), eng) if isinstance(f, Firing)]
    assert firing.threshold == threshold * DAY
    assert "twice" not in firing.reason()


def test_reason_gives_a_per_customer_threshold_in_days() -> None:
    # gaps of 4.45 days -> due 8.9 days after the last order: read in days, not hours
    (firing,) = [f for f in run(orders_on(0, 4.45, 8.9), at(days=100)) if isinstance(f, Firing)]
    assert firing.threshold == int(8.9 * DAY)
    assert firing.reason().startswith("no order for 8.9 days since ")
