"""Rule ladders and event-time semantics of the engine (docs/rules.md "Rules",
docs/time.md "Time")."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.core import ids
from agents.core.emissions import Conversion, Emission, Firing
from agents.core.engine import Engine
from agents.core.settings import DAY, HOUR, CoreSettings, LadderSettings
from agents.core.state import CustomerState, LadderProgress
from agents.core.timeutil import duration_record, iso
from schemas.records import Event
from tests.unit.agents.factories import (
    OPTED_OUT,
    T0,
    at,
    consent,
    feed_in_time_order,
    lag_needed,
    purchase,
    session,
)

CID = "cus_000481"
ENGINE = Engine(CoreSettings())
FAR = at(days=1000)
SP, INACT = "second_purchase", "inactivity"

Summary = tuple[str, int, int, int]


def new_state(cid: str = CID) -> CustomerState:
    return CustomerState(customer_id=cid, partition=0)


def summary(firings: Sequence[Emission], rule: str | None = None) -> list[Summary]:
    return [
        (f.rule, f.step, f.anchor_at, f.due_at)
        for f in firings
        if isinstance(f, Firing) and rule in (None, f.rule)
    ]


def fires(emitted: list[Emission] | None) -> list[Firing]:
    """The firings among what the engine emitted (conversions left out)."""
    return [e for e in emitted or [] if isinstance(e, Firing)]


def run(events: list[Event], engine: Engine = ENGINE, until: int = FAR) -> list[Emission]:
    """Feed events in time order, each as soon as the clock reaches it, then run to ``until``."""
    return feed_in_time_order(engine, new_state(), events, until)


def live(events: list[Event], engine: Engine = ENGINE, until: int = FAR) -> list[Firing]:
    return fires(run(events, engine, until))


# --- second_purchase -----------------------------------------------------------------


def test_second_purchase_steps_at_7_14_and_30_days_then_silence() -> None:
    firings = live([purchase(CID, T0)])
    assert summary(firings, SP) == [
        (SP, 1, T0, at(days=7)),
        (SP, 2, T0, at(days=14)),
        (SP, 3, T0, at(days=30)),
    ]
    thresholds = [duration_record(f.threshold) for f in firings if f.rule == SP]
    assert [(t.iso, t.seconds) for t in thresholds] == [
        ("P7D", 604_800),
        ("P14D", 1_209_600),
        ("P30D", 2_592_000),
    ]


def test_a_step_fires_at_its_due_time_not_a_microsecond_before() -> None:
    state = new_state()
    ENGINE.ingest(state, purchase(CID, T0), T0)
    assert ENGINE.advance(state, at(days=7) - 1) == []
    assert summary(ENGINE.advance(state, at(days=7))) == [(SP, 1, T0, at(days=7))]
    assert ENGINE.advance(state, at(days=7)) == []  # fired once, not again


def test_a_second_order_cancels_the_later_steps() -> None:
    firings = live([purchase(CID, T0, "ORD-1"), purchase(CID, at(days=10), "ORD-2")])
    assert summary(firings, SP) == [(SP, 1, T0, at(days=7))]
    assert firings[0].context["order_count"] == 1


def test_an_order_exactly_at_the_due_time_cancels_that_step() -> None:
    firings = live([purchase(CID, T0, "ORD-1"), purchase(CID, at(days=14), "ORD-2")])
    assert summary(firings, SP) == [(SP, 1, T0, at(days=7))]


def test_a_late_order_dated_at_the_due_time_still_counts() -> None:
    """An order dated D that arrives as the clock reaches D still cancels the step at D."""
    state = new_state()
    ENGINE.ingest(state, purchase(CID, T0, "ORD-1"), T0)
    assert summary(ENGINE.advance(state, at(days=13))) == [(SP, 1, T0, at(days=7))]
    fired = fires(ENGINE.ingest(state, purchase(CID, at(days=14), "ORD-2"), at(days=14)))
    assert fired == []
    assert ENGINE.next_due(state) is not None
    assert ENGINE.next_due(state).rule == INACT  # type: ignore[union-attr]


def test_an_event_the_clock_already_passed_is_applied_in_time_order() -> None:
    state = new_state()
    ENGINE.ingest(state, purchase(CID, T0, "ORD-1"), T0)
    # The second order (day 10) only arrives when the clock says day 20: the step
    # due at day 7 still fires (it was before the order), the one at 14 does not.
    fired = fires(ENGINE.ingest(state, purchase(CID, at(days=10), "ORD-2"), at(days=20)))
    assert fired is not None
    assert summary(fired) == [(SP, 1, T0, at(days=7))]
    assert fired[0].context["order_count"] == 1
    assert state.orders == 2


# --- inactivity ----------------------------------------------------------------------


def test_inactivity_steps_at_14_30_60_days_after_the_last_activity() -> None:
    firings = live([purchase(CID, T0)])
    assert summary(firings, INACT) == [
        (INACT, 1, T0, at(days=14)),
        (INACT, 2, T0, at(days=30)),
        (INACT, 3, T0, at(days=60)),
    ]
    assert [f.context["lifecycle_stage"] for f in firings if f.rule == INACT] == [
        "at_risk",
        "at_risk",
        "lapsed",
    ]


def test_activity_restarts_the_inactivity_ladder_from_the_new_anchor() -> None:
    firings = live([purchase(CID, T0), session(CID, at(days=20))])
    anchor = at(days=20)
    assert summary(firings, INACT) == [
        (INACT, 1, T0, at(days=14)),
        (INACT, 1, anchor, at(days=34)),
        (INACT, 2, anchor, at(days=50)),
        (INACT, 3, anchor, at(days=80)),
    ]


def test_a_session_at_the_due_time_resets_the_step_due_then() -> None:
    firings = live([purchase(CID, T0), session(CID, at(days=14))])
    assert summary(firings, INACT)[0] == (INACT, 1, at(days=14), at(days=28))


def test_activity_older_than_the_last_activity_does_not_restart_the_ladder() -> None:
    state = new_state()
    ENGINE.ingest(state, purchase(CID, at(days=5)), at(days=5))
    ENGINE.ingest(state, session(CID, at(days=2)), at(days=5))
    assert summary(ENGINE.advance(state, at(days=19)), INACT) == [
        (INACT, 1, at(days=5), at(days=19))
    ]


def test_sessions_before_any_order_start_no_ladder() -> None:
    state = new_state()
    ENGINE.ingest(state, session(CID, T0), T0)
    assert ENGINE.advance(state, FAR) == []
    assert ENGINE.wake_at(state) is None


def test_consent_is_not_activity() -> None:
    firings = live([purchase(CID, T0), consent(CID, at(days=10), OPTED_OUT)])
    assert summary(firings, INACT)[0] == (INACT, 1, T0, at(days=14))


def test_after_the_last_step_a_rule_stays_silent_until_reset() -> None:
    state = new_state()
    ENGINE.ingest(state, purchase(CID, T0), T0)
    assert len(ENGINE.advance(state, at(days=200))) == 6
    assert ENGINE.next_due(state) is None
    assert ENGINE.wake_at(state) is None
    assert ENGINE.advance(state, at(days=900)) == []
    assert state.stage == "lapsed"

    # Coming back after the lapse reactivates the customer and restarts the ladder.
    assert ENGINE.ingest(state, session(CID, at(days=901)), at(days=901)) == []
    assert state.stage == "reactivated"
    assert summary(ENGINE.advance(state, at(days=915))) == [(INACT, 1, at(days=901), at(days=915))]


def test_activity_while_at_risk_makes_the_customer_new_or_repeat_again() -> None:
    state = new_state()
    ENGINE.ingest(state, purchase(CID, T0), T0)
    ENGINE.advance(state, at(days=15))
    assert state.stage == "at_risk"
    ENGINE.ingest(state, session(CID, at(days=16)), at(days=16))
    assert state.stage == "new"


# --- simultaneous firings, ids and reasons -------------------------------------------


def test_simultaneous_firings_are_ordered_by_due_time_then_rule_order_then_step() -> None:
    # Step 2 of second_purchase and step 1 of inactivity are both due at day 14,
    # step 3 and step 2 both at day 30: config order puts second_purchase first.
    state = new_state()
    ENGINE.ingest(state, purchase(CID, T0), T0)
    assert summary(ENGINE.advance(state, at(days=60))) == [
        (SP, 1, T0, at(days=7)),
        (SP, 2, T0, at(days=14)),
        (INACT, 1, T0, at(days=14)),
        (SP, 3, T0, at(days=30)),
        (INACT, 2, T0, at(days=30)),
        (INACT, 3, T0, at(days=60)),
    ]


def test_trigger_id_is_deterministic_and_unique_per_customer_rule_step_anchor() -> None:
    first = live([purchase(CID, T0, "ORD-1")])
    again = live([purchase(CID, T0, "ORD-9", event_id="evt-other")])
    assert [f.trigger_id for f in first] == [f.trigger_id for f in again]
    assert len({f.trigger_id for f in first}) == len(first)
    sp2 = next(f for f in first if (f.rule, f.step) == (SP, 2))
    assert sp2.trigger_id == ids.trigger_id(CID, SP, 2, T0)
    assert uuid.UUID(sp2.trigger_id).version == 5
    # Pinned: messaging services deduplicate on it across deploys and replays.
    assert sp2.trigger_id == "15a97240-3a9c-5a1c-9ea0-18499e76177d"
    assert ids.trigger_id("cus_000482", SP, 2, T0) != sp2.trigger_id
    assert ids.trigger_id(CID, SP, 2, T0 + 1) != sp2.trigger_id
    assert ids.trigger_id(CID, INACT, 2, T0) != sp2.trigger_id


def test_reasons_read_like_a_sentence() -> None:
    firings = {(f.rule, f.step): f for f in live([purchase(CID, T0)])}
    assert firings[SP, 2].reason() == "no second order 14 days after the first on 2026-03-02"
    assert firings[SP, 1].reason() == "no second order 7 days after the first on 2026-03-02"
    assert firings[INACT, 2].reason() == "no activity for 30 days since 2026-03-02"


def test_reason_days_are_utc_and_short_thresholds_read_in_hours() -> None:
    engine = Engine(
        CoreSettings(
            second_purchase=LadderSettings(SP, (1 * DAY, 36 * HOUR)),
            inactivity=LadderSettings(INACT, (14 * DAY,), enabled=False),
        )
    )
    late_evening = at(hours=-11)  # 2026-03-01T23:00Z
    firings = live([purchase(CID, late_evening)], engine)
    assert [f.reason() for f in firings] == [
        "no second order 1 day after the first on 2026-03-01",
        "no second order 36 hours after the first on 2026-03-01",
    ]
    assert [duration_record(f.threshold).iso for f in firings] == ["P1D", "P1DT12H"]


def test_a_disabled_rule_never_fires() -> None:
    engine = Engine(CoreSettings(inactivity=LadderSettings(INACT, (14 * DAY,), enabled=False)))
    assert {f.rule for f in live([purchase(CID, T0)], engine)} == {SP}


def test_context_is_a_snapshot_at_the_due_time() -> None:
    firings = live(
        [
            purchase(CID, T0, "ORD-1", amount="30.00"),
            session(CID, at(days=3)),
            purchase(CID, at(days=40), "ORD-2", amount="12.50"),
        ]
    )
    by_due = {(f.rule, f.step, f.anchor_at): f.context for f in firings}
    assert by_due[SP, 1, T0] == {
        "order_count": 1,
        "spend": {"EUR": "30.00"},
        "first_purchase_at": "2026-03-02T10:00:00Z",
        "last_purchase_at": "2026-03-02T10:00:00Z",
        "last_activity_at": "2026-03-05T10:00:00Z",
        "lifecycle_stage": "new",
    }
    after = by_due[INACT, 1, at(days=40)]
    assert after["order_count"] == 2
    assert after["spend"] == {"EUR": "42.50"}
    assert after["last_purchase_at"] == "2026-04-11T10:00:00Z"


# --- pending events and the watermark ------------------------------------------------


def test_an_event_dated_after_the_watermark_waits_until_the_watermark_passes_it() -> None:
    state = new_state()
    ENGINE.ingest(state, purchase(CID, T0, "ORD-1"), T0)
    assert ENGINE.ingest(state, purchase(CID, at(days=10), "ORD-2"), at(days=5)) == []
    assert state.orders == 1
    assert len(state.pending) == 1
    assert ENGINE.wake_at(state) == at(days=7)  # the step due before the pending order

    fired = fires(ENGINE.advance(state, at(days=10) - 1))
    assert summary(fired) == [(SP, 1, T0, at(days=7))]
    assert state.orders == 1  # still waiting
    assert ENGINE.wake_at(state) == at(days=10)

    # The pending order is applied now: no firing, but it converts the day-7 nudge.
    converted = ENGINE.advance(state, at(days=10))
    assert summary(converted) == []
    assert [
        (c.rule, c.step, c.group, c.converted_at) for c in converted if isinstance(c, Conversion)
    ] == [(SP, 1, "delivered", at(days=10))]
    assert state.orders == 2
    assert state.pending == []


def test_a_step_due_before_a_pending_event_fires_first_and_sees_the_old_facts() -> None:
    state = new_state()
    ENGINE.ingest(state, purchase(CID, T0, "ORD-1", amount="20.00"), T0)
    ENGINE.ingest(state, purchase(CID, at(days=8), "ORD-2", amount="5.00"), T0)
    fired = fires(ENGINE.advance(state, at(days=30)))
    assert summary(fired, SP) == [(SP, 1, T0, at(days=7))]
    assert fired[0].context["order_count"] == 1
    assert fired[0].context["spend"] == {"EUR": "20.00"}


def test_a_duplicate_returns_none_and_changes_nothing() -> None:
    state = new_state()
    order = purchase(CID, T0, "ORD-1")
    ENGINE.ingest(state, order, T0)
    before = state.to_dict()
    assert ENGINE.ingest(state, order, at(days=100)) is None
    assert ENGINE.ingest(state, replace(order, event_id="evt-resent"), at(days=100)) is None
    assert state.to_dict() == before


def test_a_duplicate_of_a_pending_event_is_recognised_before_it_is_applied() -> None:
    state = new_state()
    order = purchase(CID, at(days=3), "ORD-1")
    ENGINE.ingest(state, order, T0)
    assert ENGINE.ingest(state, order, T0) is None
    ENGINE.advance(state, at(days=4))
    assert state.orders == 1


# --- backfill -------------------------------------------------------------------------


def test_backfill_silences_steps_due_before_the_cut_over_but_records_progress() -> None:
    engine = Engine(CoreSettings(backfill_until=at(days=14)))
    state = new_state()
    engine.ingest(state, purchase(CID, T0), T0)
    firings = fires(engine.advance(state, at(days=30)))
    assert [(f.rule, f.step, f.backfill) for f in firings] == [
        (SP, 1, True),
        (SP, 2, False),  # due exactly at the cut-over: not before it
        (INACT, 1, False),
        (SP, 3, False),
        (INACT, 2, False),
    ]
    assert state.ladders[SP] == LadderProgress(T0, 3)


def test_backfill_progress_means_no_repeat_after_the_cut_over() -> None:
    engine = Engine(CoreSettings(backfill_until=at(days=100)))
    state = new_state()
    engine.ingest(state, purchase(CID, T0), T0)
    assert all(f.backfill for f in fires(engine.advance(state, at(days=99))))
    assert state.ladders == {SP: LadderProgress(T0, 3), INACT: LadderProgress(T0, 3)}
    assert engine.advance(state, at(days=400)) == []


# --- arrival order within the allowed lateness ---------------------------------------


@st.composite
def history(draw: st.DrawFn) -> list[Event]:
    """One customer's purchases, sessions and consents on a 12-hour grid over 90 days."""
    events: list[Event] = []
    for i in range(draw(st.integers(1, 12))):
        t = at(hours=12 * draw(st.integers(0, 180)))
        kind = draw(st.sampled_from(["purchase", "purchase", "session", "consent"]))
        if kind == "purchase":
            events.append(purchase(CID, t, f"ORD-{i}", event_id=f"evt-{i}"))
        elif kind == "session":
            events.append(session(CID, t, event_id=f"evt-{i}"))
        else:
            events.append(consent(CID, t, OPTED_OUT, event_id=f"evt-{i}"))
    return events


@settings(max_examples=200, deadline=None)
@given(data=st.data(), events=history(), extra=st.integers(0, 3 * DAY))
def test_decisions_do_not_depend_on_arrival_order_within_the_lateness(
    data: st.DataObject, events: list[Event], extra: int
) -> None:
    arrivals = data.draw(st.permutations(events))
    lateness = lag_needed(arrivals) + extra
    end = at(days=300)

    state, shuffled = new_state(), []
    newest = arrivals[0].occurred_at
    for e in arrivals:
        newest = max(newest, e.occurred_at)
        fired = ENGINE.ingest(state, e, newest - lateness)
        assert fired is not None
        shuffled += fired
        shuffled += ENGINE.advance(state, newest - lateness)
    shuffled += ENGINE.advance(state, end)

    reference = run(events, until=end)
    assert summary(shuffled) == summary(reference)
    assert shuffled == reference  # contexts, verdicts and conversions too


# --- the fast paths the hot loop takes (docs/performance.md) --------------------------


@given(
    cid=st.text(max_size=40),
    rule=st.sampled_from([SP, INACT, "overdue"]),
    step=st.integers(1, 9),
    anchor=st.integers(-62_135_596_800_000_000, 253_402_300_799_999_999),
    key=st.none() | st.text(max_size=12),
)
def test_trigger_id_is_the_uuid5_of_its_name(
    cid: str, rule: str, step: int, anchor: int, key: str | None
) -> None:
    """ids.trigger_id builds the UUIDv5 text itself: it must be what uuid.uuid5 gives,
    or a replay by an older version would not deduplicate against this one's ids
    (a keyed ladder's too: a cart's)."""
    name = f"{cid}\x1f{rule}\x1f{step}\x1f{iso(anchor)}"
    if key is not None:
        name = f"{name}\x1f{key}"
    try:
        expected = str(uuid.uuid5(ids.TRIGGER_NAMESPACE, name))
    except UnicodeEncodeError:  # a lone surrogate: no id either way
        return
    assert ids.trigger_id(cid, rule, step, anchor, key) == expected


# Equal ladders, so that rules tie on their due time (the lower rule index wins).
TIED = Engine(
    CoreSettings(
        second_purchase=LadderSettings(SP, (14 * DAY, 30 * DAY, 60 * DAY)),
        overdue_min_orders=2,
        overdue_floor=14 * DAY,
    )
)


@settings(max_examples=200, deadline=None)
@given(events=history(), lag=st.integers(0, 40))
def test_next_due_and_wake_at_agree_with_the_pending_steps(events: list[Event], lag: int) -> None:
    """next_due and wake_at skip building a Due per rule: same answers as pending()."""
    state = new_state()

    def check() -> None:
        dues = TIED.pending(state)
        assert TIED.next_due(state) == (dues[0] if dues else None)
        candidates = [d.due_at for d in dues[:1]] + [p["t"] for p in state.pending[:1]]
        assert TIED.wake_at(state) == (min(candidates) if candidates else None)

    for e in sorted(events, key=lambda e: e.occurred_at):
        watermark = e.occurred_at - lag * DAY  # some events wait in pending
        TIED.ingest(state, e, watermark)
        check()
        TIED.advance(state, watermark + 20 * DAY)  # fire some steps
        check()
