"""Guardrails (docs/guardrails.md "Guardrails"): holdout, opted_out, min_gap, frequency_cap
and their order.

Each guardrail is checked on its own and in combination, both through
:meth:`Guardrails.judge` and end to end through the :class:`Engine` (whose
firings are driven by short custom ladders so the due times are easy to read).
Expectations are worked out from docs/guardrails.md's rules, never copied from the code.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.core.emissions import Emission, Firing
from agents.core.engine import Engine
from agents.core.guardrails import (
    OUTCOME_DELIVERED,
    OUTCOME_FREQUENCY_CAP,
    OUTCOME_MIN_GAP,
    Guardrails,
)
from agents.core.ids import holdout_bucket
from agents.core.settings import DAY, HOUR, CoreSettings, LadderSettings
from agents.core.state import CountKey, CustomerState
from schemas.records import Event
from tests.unit.agents.factories import (
    OPTED_IN,
    OPTED_OUT,
    T0,
    at,
    consent,
    feed_in_time_order,
    purchase,
    session,
)

MINUTE = 60 * 1_000_000
SALT = "retention"
SP, INACT = "second_purchase", "inactivity"


def pick(*, holdout: bool, percent: float = 10.0, salt: str = SALT, skip: int = 0) -> str:
    """A customer id that is (or is not) in the control group for this salt and percent."""
    found = (
        cid
        for cid in (f"cus_{n:06d}" for n in itertools.count())
        if (holdout_bucket(cid, salt) < percent) == holdout
    )
    return next(itertools.islice(found, skip, None))


CID = pick(holdout=False)
HELD = pick(holdout=True)


def only_second_purchase(*steps: int, **overrides: Any) -> Engine:
    """An engine whose only rule is second_purchase with these step thresholds."""
    return Engine(
        CoreSettings(
            second_purchase=LadderSettings(SP, tuple(steps)),
            inactivity=LadderSettings(INACT, (14 * DAY,), enabled=False),
            overdue_enabled=False,
            **overrides,
        )
    )


def outcomes(emitted: Sequence[Emission]) -> list[tuple[int, int, str]]:
    """(step, due_at, outcome) of each firing."""
    return [(f.step, f.due_at, f.outcome) for f in emitted if isinstance(f, Firing)]


def run(engine: Engine, events: list[Event], until: int, cid: str = CID) -> list[Emission]:
    """Events in time order, each taken in as the clock reaches it; then advance to ``until``."""
    state = CustomerState(customer_id=cid, partition=0)
    return feed_in_time_order(engine, state, events, until)


# --- holdout -------------------------------------------------------------------------


def test_holdout_firings_are_recorded_never_delivered() -> None:
    engine = only_second_purchase(1 * DAY, 2 * DAY)
    state = CustomerState(customer_id=HELD, partition=0)
    engine.ingest(state, purchase(HELD, T0), T0)
    fired = [f for f in engine.advance(state, at(days=3)) if isinstance(f, Firing)]
    assert [(f.step, f.outcome, f.holdout, f.delivered) for f in fired] == [
        (1, "holdout", True, False),
        (2, "holdout", True, False),
    ]
    assert state.decision_counts == {CountKey(SP, 1, "holdout"): 1, CountKey(SP, 2, "holdout"): 1}
    assert [f.outcome for f in state.recent_firings] == ["holdout", "holdout"]


def test_a_non_holdout_customer_is_delivered_and_flagged_so() -> None:
    fired = [
        f
        for f in run(only_second_purchase(1 * DAY), [purchase(CID, T0)], at(days=2))
        if isinstance(f, Firing)
    ]
    assert [(f.outcome, f.holdout, f.delivered) for f in fired] == [("delivered", False, True)]


def test_holdout_firings_do_not_count_toward_gap_or_cap() -> None:
    """Firings recorded while the customer was held out leave no trace in the guardrails."""
    steps = (1 * DAY, 1 * DAY + 1 * HOUR, 1 * DAY + 2 * HOUR)
    held_engine = only_second_purchase(*steps, holdout_percent=100.0, frequency_cap=1)
    open_engine = only_second_purchase(*steps, holdout_percent=0.0, frequency_cap=1)
    state = CustomerState(customer_id=CID, partition=0)
    held_engine.ingest(state, purchase(CID, T0), T0)
    first = held_engine.advance(state, at(days=1, hours=1))
    assert outcomes(first) == [(1, at(days=1), "holdout"), (2, at(days=1, hours=1), "holdout")]
    # Two nudges 1 h and 2 h back with cap 1: had they been delivered this would be
    # min_gap; as holdout records they do not count, so the next one is delivered.
    assert outcomes(open_engine.advance(state, at(days=2))) == [
        (3, at(days=1, hours=2), "delivered")
    ]


def test_holdout_percent_0_and_100_put_nobody_and_everyone_in_the_control_group() -> None:
    everyone = only_second_purchase(1 * DAY, holdout_percent=100.0)
    nobody = only_second_purchase(1 * DAY, holdout_percent=0.0)
    assert outcomes(run(everyone, [purchase(CID, T0)], at(days=2))) == [(1, at(days=1), "holdout")]
    assert outcomes(run(nobody, [purchase(HELD, T0)], at(days=2), cid=HELD)) == [
        (1, at(days=1), "delivered")
    ]


# --- opted_out -----------------------------------------------------------------------


def test_an_opted_out_customer_is_not_messaged() -> None:
    engine = only_second_purchase(7 * DAY)
    events = [purchase(CID, T0), consent(CID, at(days=1), OPTED_OUT)]
    assert outcomes(run(engine, events, at(days=8))) == [(1, at(days=7), "opted_out")]


def test_opting_back_in_restores_delivery() -> None:
    engine = only_second_purchase(7 * DAY)
    events = [
        purchase(CID, T0),
        consent(CID, at(days=1), OPTED_OUT),
        consent(CID, at(days=3), OPTED_IN),
    ]
    assert outcomes(run(engine, events, at(days=8))) == [(1, at(days=7), "delivered")]


def test_the_latest_consent_by_event_time_wins_not_the_latest_to_arrive() -> None:
    engine = only_second_purchase(7 * DAY)
    state = CustomerState(customer_id=CID, partition=0)
    engine.ingest(state, purchase(CID, T0), T0)
    engine.ingest(state, consent(CID, at(days=6), OPTED_IN), at(days=6))
    # An older opt-out arrives late: it is history, the opt-in at day 6 still stands.
    engine.ingest(state, consent(CID, at(days=5), OPTED_OUT), at(days=6))
    assert outcomes(engine.advance(state, at(days=8))) == [(1, at(days=7), "delivered")]


def test_a_consent_dated_after_the_due_time_does_not_count() -> None:
    engine = only_second_purchase(7 * DAY)
    state = CustomerState(customer_id=CID, partition=0)
    engine.ingest(state, purchase(CID, T0), T0)
    # Known to the processor early (it waits as pending), but dated after D.
    engine.ingest(state, consent(CID, at(days=7) + 1, OPTED_OUT), T0)
    assert outcomes(engine.advance(state, at(days=8))) == [(1, at(days=7), "delivered")]
    assert state.opted_out  # it does count from its own time on


def test_a_consent_dated_exactly_at_the_due_time_counts() -> None:
    engine = only_second_purchase(7 * DAY)
    events = [purchase(CID, T0), consent(CID, at(days=7), OPTED_OUT)]
    assert outcomes(run(engine, events, at(days=8))) == [(1, at(days=7), "opted_out")]


# --- min_gap -------------------------------------------------------------------------


def test_min_gap_suppresses_a_nudge_23h59m_after_a_delivered_one() -> None:
    engine = only_second_purchase(1 * DAY, 2 * DAY - 1 * MINUTE)
    assert outcomes(run(engine, [purchase(CID, T0)], at(days=3))) == [
        (1, at(days=1), "delivered"),
        (2, at(days=2) - MINUTE, "min_gap"),
    ]


def test_min_gap_allows_a_nudge_exactly_24h_after_a_delivered_one() -> None:
    engine = only_second_purchase(1 * DAY, 2 * DAY)
    assert outcomes(run(engine, [purchase(CID, T0)], at(days=3))) == [
        (1, at(days=1), "delivered"),
        (2, at(days=2), "delivered"),
    ]


def test_min_gap_is_configurable() -> None:
    engine = only_second_purchase(1 * DAY, 1 * DAY + 3 * HOUR, min_gap=2 * HOUR)
    assert [o for _, _, o in outcomes(run(engine, [purchase(CID, T0)], at(days=3)))] == [
        "delivered",
        "delivered",
    ]


# --- frequency_cap -------------------------------------------------------------------


def test_frequency_cap_a_nudge_due_exactly_30_days_before_does_not_count() -> None:
    # Delivered at days 1, 2, 3, 4; the fifth is due at day 31: the window
    # (day 1, day 31] holds only days 2-4, three nudges, under the cap of 4.
    engine = only_second_purchase(1 * DAY, 2 * DAY, 3 * DAY, 4 * DAY, 31 * DAY)
    assert [o for _, _, o in outcomes(run(engine, [purchase(CID, T0)], at(days=40)))] == [
        "delivered"
    ] * 5


def test_frequency_cap_a_nudge_due_one_microsecond_inside_the_window_counts() -> None:
    # The same, all four earlier nudges shifted 1 us later: day 1 + 1 us is inside
    # (day 1, day 31], so four were delivered in the window and the fifth is capped.
    engine = only_second_purchase(DAY + 1, 2 * DAY + 1, 3 * DAY + 1, 4 * DAY + 1, 31 * DAY)
    assert outcomes(run(engine, [purchase(CID, T0)], at(days=40)))[-1] == (
        5,
        at(days=31),
        "frequency_cap",
    )


def test_frequency_cap_default_is_four_in_thirty_days() -> None:
    engine = only_second_purchase(*(d * DAY for d in range(1, 7)))
    assert [o for _, _, o in outcomes(run(engine, [purchase(CID, T0)], at(days=10)))] == [
        "delivered",
        "delivered",
        "delivered",
        "delivered",
        "frequency_cap",
        "frequency_cap",
    ]


def test_frequency_cap_is_configurable() -> None:
    engine = only_second_purchase(1 * DAY, 2 * DAY, 3 * DAY, frequency_cap=2)
    assert [o for _, _, o in outcomes(run(engine, [purchase(CID, T0)], at(days=10)))] == [
        "delivered",
        "delivered",
        "frequency_cap",
    ]


# --- the order of the guardrails -----------------------------------------------------


def test_holdout_comes_before_opted_out() -> None:
    engine = only_second_purchase(7 * DAY)
    events = [purchase(HELD, T0), consent(HELD, at(days=1), OPTED_OUT)]
    assert outcomes(run(engine, events, at(days=8), cid=HELD)) == [(1, at(days=7), "holdout")]


def test_opted_out_comes_before_min_gap() -> None:
    engine = only_second_purchase(1 * DAY, 1 * DAY + 2 * HOUR)
    events = [purchase(CID, T0), consent(CID, at(days=1, hours=1), OPTED_OUT)]
    assert outcomes(run(engine, events, at(days=3))) == [
        (1, at(days=1), "delivered"),
        (2, at(days=1, hours=2), "opted_out"),
    ]


def test_min_gap_comes_before_frequency_cap() -> None:
    engine = only_second_purchase(1 * DAY, 1 * DAY + 1 * HOUR, frequency_cap=1)
    assert outcomes(run(engine, [purchase(CID, T0)], at(days=3))) == [
        (1, at(days=1), "delivered"),
        (2, at(days=1, hours=1), "min_gap"),
    ]


def test_judge_applies_the_guardrails_in_spec_order() -> None:
    g = Guardrails(CoreSettings(frequency_cap=2))
    d = at(days=40)
    recent = [d - 1 * HOUR]  # within the gap
    full = [d - 2 * DAY, d - 3 * DAY]  # two in the window: at the cap of 2
    assert g.judge(HELD, d, opted_out=True, delivered=recent + full) == "holdout"
    assert g.judge(CID, d, opted_out=True, delivered=recent + full) == "opted_out"
    assert g.judge(CID, d, opted_out=False, delivered=recent + full) == "min_gap"
    assert g.judge(CID, d, opted_out=False, delivered=full) == "frequency_cap"
    assert g.judge(CID, d, opted_out=False, delivered=full[:1]) == "delivered"
    assert g.judge(CID, d, opted_out=False, delivered=[]) == "delivered"


@pytest.mark.parametrize(
    ("before", "expected"),
    [
        (24 * HOUR - 1 * MINUTE, "min_gap"),
        (24 * HOUR - 1, "min_gap"),
        (24 * HOUR, "delivered"),
        (0, "min_gap"),  # a nudge delivered at the very same instant
    ],
)
def test_judge_min_gap_edges(before: int, expected: str) -> None:
    g = Guardrails(CoreSettings())
    d = at(days=10)
    assert g.judge(CID, d, opted_out=False, delivered=[d - before]) == expected


@pytest.mark.parametrize(
    ("oldest", "expected"),
    [(30 * DAY, "delivered"), (30 * DAY - 1, "frequency_cap"), (31 * DAY, "delivered")],
)
def test_judge_frequency_cap_window_edges(oldest: int, expected: str) -> None:
    g = Guardrails(CoreSettings())
    d = at(days=60)
    delivered = [d - oldest, d - 3 * DAY, d - 2 * DAY, d - 1 * DAY]
    assert g.judge(CID, d, opted_out=False, delivered=delivered) == expected


def test_judge_ignores_delivered_nudges_due_after_d() -> None:
    """Only the past counts: nudges due later than D are neither a gap nor a cap."""
    g = Guardrails(CoreSettings(frequency_cap=1))
    d = at(days=10)
    assert g.judge(CID, d, opted_out=False, delivered=[d + 1, d + HOUR]) == "delivered"


# --- suppressed firings count for nothing --------------------------------------------


def test_a_min_gap_suppression_does_not_restart_the_gap() -> None:
    # delivered at day 1; day 1 + 23 h is min_gap; day 2 + 12 h is 36 h after the
    # delivered one (only 13 h after the suppressed one): delivered.
    engine = only_second_purchase(1 * DAY, 1 * DAY + 23 * HOUR, 2 * DAY + 12 * HOUR)
    assert [o for _, _, o in outcomes(run(engine, [purchase(CID, T0)], at(days=5)))] == [
        "delivered",
        "min_gap",
        "delivered",
    ]


def test_opted_out_firings_count_neither_toward_gap_nor_cap() -> None:
    engine = only_second_purchase(1 * DAY, 1 * DAY + 12 * HOUR, frequency_cap=1)
    events = [
        purchase(CID, T0),
        consent(CID, at(hours=1), OPTED_OUT),
        consent(CID, at(days=1, hours=6), OPTED_IN),
    ]
    assert outcomes(run(engine, events, at(days=5))) == [
        (1, at(days=1), "opted_out"),
        (2, at(days=1, hours=12), "delivered"),
    ]


def test_capped_firings_do_not_count_toward_the_cap() -> None:
    # cap 2: days 1, 2 delivered; day 3 capped; day 31 + 1 us: the window
    # (day 1 + 1 us, day 31 + 1 us] holds day 2 (delivered) and day 3 (capped):
    # only one delivered, so it is delivered.
    engine = only_second_purchase(1 * DAY, 2 * DAY, 3 * DAY, 31 * DAY + 1, frequency_cap=2)
    assert [o for _, _, o in outcomes(run(engine, [purchase(CID, T0)], at(days=40)))] == [
        "delivered",
        "delivered",
        "frequency_cap",
        "delivered",
    ]


# --- simultaneous firings ------------------------------------------------------------


def test_simultaneous_firings_first_in_config_order_is_delivered_the_next_gets_min_gap() -> None:
    # Defaults: second_purchase step 2 and inactivity step 1 are both due at day 14.
    engine = Engine(CoreSettings())
    fired = [
        (f.rule, f.step, f.due_at, f.outcome)
        for f in run(engine, [purchase(CID, T0)], at(days=14))
        if isinstance(f, Firing)
    ]
    assert fired == [
        (SP, 1, at(days=7), "delivered"),
        (SP, 2, at(days=14), "delivered"),
        (INACT, 1, at(days=14), "min_gap"),
    ]


def test_simultaneous_firings_the_earlier_due_time_wins_over_config_order() -> None:
    # inactivity (second in config) due at day 3 comes before second_purchase at day 3 + 1 h.
    engine = Engine(
        CoreSettings(
            second_purchase=LadderSettings(SP, (3 * DAY + 1 * HOUR,)),
            inactivity=LadderSettings(INACT, (3 * DAY,)),
            overdue_enabled=False,
        )
    )
    fired = [
        (f.rule, f.outcome)
        for f in run(engine, [purchase(CID, T0)], at(days=5))
        if isinstance(f, Firing)
    ]
    assert fired == [(INACT, "delivered"), (SP, "min_gap")]


# --- the hash split ------------------------------------------------------------------


@pytest.mark.parametrize("percent", [10.0, 25.0])
def test_holdout_split_is_within_one_point_of_the_configured_share(percent: float) -> None:
    g = Guardrails(CoreSettings(holdout_percent=percent))
    n = 100_000
    held = sum(1 for i in range(n) if g.in_holdout(f"cus_{i:07d}"))
    assert abs(held / n * 100 - percent) <= 1.0


def test_holdout_is_stable_for_an_id_and_salt_and_reshuffled_by_another_salt() -> None:
    ids = [f"cus_{i:07d}" for i in range(20_000)]
    a = Guardrails(CoreSettings(holdout_salt="spring"))
    a_again = Guardrails(CoreSettings(holdout_salt="spring"))
    b = Guardrails(CoreSettings(holdout_salt="autumn"))
    group_a = {c for c in ids if a.in_holdout(c)}
    assert group_a == {c for c in ids if a_again.in_holdout(c)}
    group_b = {c for c in ids if b.in_holdout(c)}
    # Independent 10% draws overlap on about 10% of either group, not all of it.
    overlap = len(group_a & group_b) / len(group_a)
    assert 0.05 < overlap < 0.2
    assert abs(len(group_b) / len(ids) - 0.10) < 0.01


def test_holdout_bucket_is_in_range_and_deterministic() -> None:
    values = [holdout_bucket(f"c{i}", SALT) for i in range(1000)]
    assert all(0.0 <= v < 100.0 for v in values)
    assert values == [holdout_bucket(f"c{i}", SALT) for i in range(1000)]
    assert Guardrails(CoreSettings(holdout_percent=0.0)).in_holdout(HELD) is False
    assert Guardrails(CoreSettings(holdout_percent=100.0)).in_holdout(CID) is True


# --- what the record remembers (docs/guardrails.md "Guardrails") ----------------------------


def active_customer(every: int, until: int) -> list[Event]:
    """One order at T0, then a session every ``every`` micros up to ``until``: each
    session restarts the inactivity ladder, so a short ladder fires all the time."""
    return [purchase(CID, T0)] + [session(CID, t) for t in range(T0 + every, until + 1, every)]


def only_inactivity(*steps: int, **overrides: Any) -> Engine:
    """An engine whose rules are the inactivity ladder with these steps; nobody held out."""
    return Engine(
        CoreSettings(
            second_purchase=LadderSettings(SP, (365 * DAY,), enabled=False),
            inactivity=LadderSettings(INACT, tuple(steps)),
            overdue_enabled=False,
            holdout_percent=0.0,
            **overrides,
        )
    )


def delivered(emitted: Sequence[Emission]) -> list[int]:
    return [f.due_at for f in emitted if isinstance(f, Firing) and f.delivered]


def most_in_a_window(due_times: list[int], window: int) -> int:
    """The most delivered nudges with due times in one window (D - window, D]."""
    return max((sum(1 for t in due_times if d - window < t <= d) for d in due_times), default=0)


def test_an_hourly_ladder_never_gets_past_the_cap_of_four_in_thirty_days() -> None:
    """Ten steps PT1H..PT10H and a session every 11 hours: 10 firings per session,
    hundreds in a month, almost all suppressed.  Four nudges are delivered in the
    first days; the fifth only once the first has left the 30-day window.  (Before,
    the record kept its newest 128 firings, suppressed ones included, so delivered
    nudges were forgotten within days: 21 were delivered in those 31 days.)"""
    engine = only_inactivity(*(k * HOUR for k in range(1, 11)))
    until = at(days=31)
    emitted = run(engine, active_customer(11 * HOUR, until), until)
    sent = delivered(emitted)
    assert len([f for f in emitted if isinstance(f, Firing)]) > 600
    assert most_in_a_window(sent, 30 * DAY) == 4
    assert len(sent) == 5 and sent[4] - sent[0] >= 30 * DAY


def test_a_minute_ladder_gets_at_most_one_nudge_a_day_with_a_one_day_gap() -> None:
    """Ten steps PT1M..PT10M and a session every 11 minutes for three days: about
    3,900 firings.  With the default 1-day gap no two delivered nudges are less than
    a day apart (before: 11 in one day)."""
    engine = only_inactivity(*(k * MINUTE for k in range(1, 11)))
    until = at(days=3)
    sent = delivered(run(engine, active_customer(11 * MINUTE, until), until))
    assert most_in_a_window(sent, DAY) == 1
    assert all(b - a >= DAY for a, b in itertools.pairwise(sent))
    assert len(sent) == 3


def test_a_cap_of_200_is_reached_and_holds() -> None:
    """One step PT1M, a gap of one minute, a cap of 200 a month, and a session every
    2 minutes for 20 hours: 600 firings; the first 200 are delivered, the rest
    capped (before: all 600 delivered, the cap above the 128 firings remembered)."""
    engine = only_inactivity(MINUTE, min_gap=MINUTE, frequency_cap=200)
    until = at(hours=20)
    emitted = run(engine, active_customer(2 * MINUTE, until), until)
    verdicts = [f.outcome for f in emitted if isinstance(f, Firing)]
    assert {v: verdicts.count(v) for v in set(verdicts)} == {"delivered": 200, "frequency_cap": 400}
    assert verdicts == ["delivered"] * 200 + ["frequency_cap"] * 400


# --- the fast paths (docs/performance.md "The core fast paths") -----------------------


@given(
    ids=st.lists(st.sampled_from(["", "a", "b", "cus_000001", "cus_000002", "\x00"]), max_size=30),
    percent=st.floats(0.0, 100.0),
    salt=st.text(max_size=8),
)
def test_in_holdout_keeps_the_last_answer_and_it_is_the_bucket_below_the_percent(
    ids: list[str], percent: float, salt: str
) -> None:
    """Guardrails.in_holdout answers a repeated customer from its last answer: for any
    sequence of ids, repeated or not, the answer is the plain bucket comparison, so
    no customer moves between groups."""
    guardrails = Guardrails(CoreSettings(holdout_percent=percent, holdout_salt=salt))
    for cid in ids:
        assert guardrails.in_holdout(cid) == (holdout_bucket(cid, salt) < percent)


def _gap_then_cap(
    due_at: int, delivered: Sequence[int], min_gap: int, window: int, cap: int
) -> str:
    """The verdict after holdout, consent and arbitration as two passes over the sends
    (the code Guardrails.judge's one pass replaced)."""
    if any(due_at - min_gap < t <= due_at for t in delivered):
        return OUTCOME_MIN_GAP
    if sum(1 for t in delivered if due_at - window < t <= due_at) >= cap:
        return OUTCOME_FREQUENCY_CAP
    return OUTCOME_DELIVERED


@given(
    due_at=st.integers(0, 90 * DAY),
    delivered=st.lists(st.integers(0, 90 * DAY).map(lambda t: t - t % HOUR), max_size=12),
    min_gap=st.sampled_from([0, 1, HOUR, 24 * HOUR, 10 * DAY, 40 * DAY]),
    window=st.sampled_from([0, 1, DAY, 7 * DAY, 30 * DAY]),
    cap=st.integers(0, 6),
)
def test_judge_counts_gap_and_cap_in_one_pass_as_in_two(
    due_at: int, delivered: list[int], min_gap: int, window: int, cap: int
) -> None:
    """min_gap and frequency_cap read from one pass over the earlier sends: the same
    verdict as two, whatever the order of the sends and the settings (sends on the
    hour so that edges and ties come up)."""
    guardrails = Guardrails(
        CoreSettings(
            holdout_percent=0.0, min_gap=min_gap, frequency_window=window, frequency_cap=cap
        )
    )
    expected = _gap_then_cap(due_at, delivered, min_gap, window, cap)
    assert guardrails.judge(CID, due_at, False, delivered) == expected
