"""The offline reference on cases a user can check by hand, plus properties."""

from __future__ import annotations

import itertools
import statistics
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.core import ids
from agents.core.settings import DAY, HOUR, CoreSettings
from agents.core.timeutil import iso, to_micros
from agents.offline.reference import Conversion, Firing, ReferenceResult, compute_decisions
from streams.config import load_config

T0 = to_micros(datetime(2026, 3, 2, 10, 0, tzinfo=UTC))
NOW = T0 + 400 * DAY
CORE = CoreSettings()
_ids = itertools.count(1)


def _line(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj)


def purchase(
    customer: str, t: int, order_id: str, *, event_id: str | None = None, amount: Any = "10.00"
) -> bytes:
    return _line(
        {
            "schema": "purchase/1",
            "event_id": event_id or f"e{next(_ids)}",
            "customer_id": customer,
            "occurred_at": iso(t),
            "order_id": order_id,
            "amount": amount,
            "currency": "EUR",
        }
    )


def session(customer: str, t: int, *, event_id: str | None = None) -> bytes:
    return _line(
        {
            "schema": "session/1",
            "event_id": event_id or f"e{next(_ids)}",
            "customer_id": customer,
            "occurred_at": iso(t),
            "session_id": f"s{next(_ids)}",
        }
    )


def consent(customer: str, t: int, status: str) -> bytes:
    return _line(
        {
            "schema": "consent/1",
            "event_id": f"e{next(_ids)}",
            "customer_id": customer,
            "occurred_at": iso(t),
            "status": status,
        }
    )


def run(lines: list[bytes], until: int | None = None, core: CoreSettings = CORE) -> ReferenceResult:
    return compute_decisions(lines, core, until=until, now=NOW)


def fired(result: ReferenceResult) -> list[tuple[str, int, str, str]]:
    """(rule, step, anchor_at, due_at) in output order."""
    return [(d["rule"], d["step"], d["anchor_at"], d["due_at"]) for d in result.decisions]


def at(days: float) -> str:
    return iso(T0 + int(days * DAY))


# Every firing of the default ladders after one order at T0 (none after it), in order.
ONE_ORDER = [
    ("second_purchase", 1, at(0), at(7)),
    ("second_purchase", 2, at(0), at(14)),
    ("inactivity", 1, at(0), at(14)),
    ("second_purchase", 3, at(0), at(30)),
    ("inactivity", 2, at(0), at(30)),
    ("inactivity", 3, at(0), at(60)),
]


# --- second_purchase -----------------------------------------------------------------


def test_one_order_gets_the_three_second_purchase_steps_and_the_inactivity_ladder() -> None:
    result = run([purchase("alice", T0, "o1")], until=T0 + 100 * DAY)
    assert fired(result) == ONE_ORDER
    assert at(7) == "2026-03-09T10:00:00Z"


def test_decision_objects_carry_the_trigger_contract() -> None:
    result = run([purchase("alice", T0, "o1")], until=T0 + 7 * DAY)
    assert result.decisions == [
        {
            "customer_id": "alice",
            "rule": "second_purchase",
            "step": 1,
            "threshold": "P7D",
            "threshold_seconds": 7 * 86400,
            "anchor_at": "2026-03-02T10:00:00Z",
            "due_at": "2026-03-09T10:00:00Z",
            "trigger_id": ids.trigger_id("alice", "second_purchase", 1, T0),
            "delivered": True,
            "outcome": "delivered",
            "holdout": False,
        }
    ]


def test_an_order_a_second_after_the_due_time_converts_in_0_001_hours() -> None:
    # outcome/1's hours_to_convert is > 0; rounding alone made it 0.0 (docs/rules.md
    # "Outcomes (conversions)").
    due = to_micros(datetime(2026, 3, 9, tzinfo=UTC))
    firing = Firing("cus_a", "second_purchase", 0, 1, 7 * DAY, due - 7 * DAY, due)
    hours = [Conversion(firing, "delivered", due + t, "o").hours_to_convert for t in (1, 10**6)]
    assert hours == [0.001, 0.001]
    assert Conversion(firing, "delivered", due + 5_400_000_000, "o").hours_to_convert == 1.5


def test_second_order_after_ten_days_leaves_only_step_one() -> None:
    result = run([purchase("bob", T0, "o1"), purchase("bob", T0 + 10 * DAY, "o2")], T0 + 35 * DAY)
    assert [x for x in fired(result) if x[0] == "second_purchase"] == [
        ("second_purchase", 1, at(0), at(7))
    ]


def test_second_order_exactly_at_the_due_time_cancels_the_step() -> None:
    # An event dated exactly at D counts: the customer has bought again by then.
    result = run([purchase("bob", T0, "o1"), purchase("bob", T0 + 7 * DAY, "o2")], T0 + 35 * DAY)
    assert [x for x in fired(result) if x[0] == "second_purchase"] == []


def test_two_orders_at_the_same_instant_are_two_orders() -> None:
    result = run([purchase("bob", T0, "o1"), purchase("bob", T0, "o2")], T0 + 35 * DAY)
    assert [x for x in fired(result) if x[0] == "second_purchase"] == []
    assert result.facts["bob"].ttsp == 0


# --- inactivity ----------------------------------------------------------------------


def test_a_session_restarts_the_inactivity_ladder() -> None:
    lines = [purchase("carol", T0, "o1"), session("carol", T0 + 20 * DAY)]
    result = run(lines, until=T0 + 200 * DAY)
    assert [x for x in fired(result) if x[0] == "inactivity"] == [
        ("inactivity", 1, at(0), at(14)),
        ("inactivity", 1, at(20), at(34)),
        ("inactivity", 2, at(20), at(50)),
        ("inactivity", 3, at(20), at(80)),
    ]


def test_activity_exactly_at_the_due_time_resets_instead_of_firing() -> None:
    lines = [purchase("carol", T0, "o1"), session("carol", T0 + 14 * DAY)]
    result = run(lines, until=T0 + 30 * DAY)
    assert [x for x in fired(result) if x[0] == "inactivity"] == [
        ("inactivity", 1, at(14), at(28)),
    ]


def test_sessions_before_the_first_order_do_not_anchor_anything() -> None:
    lines = [session("dan", T0 - 5 * DAY), purchase("dan", T0, "o1")]
    result = run(lines, until=T0 + 100 * DAY)
    assert {x[2] for x in fired(result)} == {at(0)}


def test_a_session_only_customer_gets_nothing() -> None:
    lines = [session("eve", T0), session("eve", T0 + 3 * DAY)]
    result = run(lines, until=T0 + 200 * DAY)
    assert result.decisions == []
    assert result.customers == 1
    assert result.facts["eve"].order_count == 0


def test_consents_are_not_activity() -> None:
    lines = [purchase("fay", T0, "o1"), consent("fay", T0 + 5 * DAY, "opted_out")]
    result = run(lines, until=T0 + 14 * DAY)
    assert ("inactivity", 1, at(0), at(14)) in fired(result)
    assert result.facts["fay"].consents == ((T0 + 5 * DAY, "opted_out"),)


# --- dedup ---------------------------------------------------------------------------


def test_duplicates_and_order_retries_count_once() -> None:
    first = purchase("gus", T0, "o1", event_id="p1")
    lines = [
        first,
        first,  # at-least-once redelivery
        purchase("gus", T0 + 8 * DAY, "o1", event_id="p1-retry"),  # same order, new event_id
        purchase("gus", T0 + 8 * DAY, "o1", event_id="p1-retry"),
    ]
    result = run(lines, until=T0 + 30 * DAY)
    assert (result.events, result.duplicates, result.order_retries) == (1, 2, 1)
    assert result.facts["gus"].order_times == (T0,)
    assert result.facts["gus"].spend == Decimal("10.00")
    # The retry is neither a second order nor activity: every step fires from T0.
    assert fired(result) == ONE_ORDER[:5]


def test_an_order_is_dated_by_its_earliest_event_whatever_the_file_order() -> None:
    # As ``retention replay`` delivers the file (by time), the earliest copy counts.
    lines = [
        purchase("hal", T0 + 1 * DAY, "o1", event_id="late-stamp"),
        purchase("hal", T0, "o1", event_id="original"),
    ]
    result = run(lines, until=T0 + 8 * DAY)
    assert result.facts["hal"].order_times == (T0,)
    assert fired(result) == [("second_purchase", 1, at(0), at(7))]
    assert run(lines[::-1], until=T0 + 8 * DAY).decisions == result.decisions


def test_in_arrival_order_an_order_is_dated_by_its_first_event_in_the_file() -> None:
    # A file that is a live feed's arrival order (``retention produce`` sends it as it is).
    lines = [
        purchase("hal", T0 + 1 * DAY, "o1", event_id="late-stamp"),
        purchase("hal", T0, "o1", event_id="original"),
    ]
    result = compute_decisions(lines, CORE, until=T0 + 8 * DAY, now=NOW, arrival_order=True)
    assert result.facts["hal"].order_times == (T0 + DAY,)
    assert fired(result) == [("second_purchase", 1, at(1), at(8))]


def test_dedup_is_per_customer() -> None:
    lines = [purchase("ida", T0, "o1", event_id="x"), purchase("jon", T0, "o1", event_id="x")]
    result = run(lines, until=T0 + 7 * DAY)
    assert (result.events, result.duplicates, result.customers) == (2, 0, 2)
    assert [d["customer_id"] for d in result.decisions] == ["ida", "jon"]


def test_file_order_of_distinct_events_does_not_matter() -> None:
    lines = [
        session("kim", T0 + 20 * DAY),
        purchase("kim", T0 + 3 * DAY, "o2"),
        purchase("kim", T0, "o1"),
    ]
    assert fired(run(lines, T0 + 90 * DAY)) == fired(run(lines[::-1], T0 + 90 * DAY))


# --- horizon and backfill ------------------------------------------------------------


def test_until_cuts_off_and_includes_the_due_time_itself() -> None:
    result = run([purchase("lea", T0, "o1")], until=T0 + 14 * DAY)
    assert fired(result) == ONE_ORDER[:3]
    assert run([purchase("lea", T0, "o1")], until=T0 + 14 * DAY - 1).decisions[-1]["step"] == 1


def test_until_defaults_to_the_latest_valid_event() -> None:
    lines = [
        purchase("max", T0, "o1"),
        session("max", T0 + 2 * DAY),
        session("other", T0 + 9 * DAY),
        # Invalid lines do not move the horizon, even with a later time.
        _line({"schema": "session/1", "event_id": "bad", "occurred_at": iso(T0 + 99 * DAY)}),
    ]
    result = run(lines)
    assert result.until == T0 + 9 * DAY
    assert fired(result) == [("second_purchase", 1, at(0), at(7))]


def test_backfill_cut_over_drops_everything_due_before_it() -> None:
    core = replace(CORE, backfill_until=T0 + 20 * DAY)
    result = run([purchase("ned", T0, "o1")], until=T0 + 100 * DAY, core=core)
    assert fired(result) == ONE_ORDER[3:]  # the firings of days 30 and 60


def test_backfill_cut_over_is_inclusive() -> None:
    core = replace(CORE, backfill_until=T0 + 14 * DAY)
    result = run([purchase("ned", T0, "o1")], until=T0 + 14 * DAY, core=core)
    assert fired(result) == ONE_ORDER[1:3]  # day 7 is before the cut-over, day 14 is not


# --- bad input -----------------------------------------------------------------------


def test_invalid_lines_are_counted_per_code_and_blank_lines_skipped() -> None:
    good = purchase("olga", T0, "o1")
    naive = good.replace(b'Z"', b'"')
    lines = [
        good,
        b"",
        b"   \n",
        b'{"schema": "purchase/1", ',
        b"[1, 2]",
        naive,
        _line({"schema": "refund/1", "event_id": "r", "customer_id": "olga"}),
        _line({"schema": "session/1", "event_id": "s", "occurred_at": iso(T0)}),
        purchase("olga", T0, "o2", amount="-1"),
        purchase("olga", NOW + 2 * DAY, "o3"),
        good[:-1] + b',"note":"' + b"x" * 70_000 + b'"}',
        good + b"\n",  # a duplicate, newline and all
    ]
    result = run(lines, until=T0 + 7 * DAY)
    assert result.dead_letters == {
        "future_timestamp": 1,
        "invalid_field": 1,
        "invalid_json": 1,
        "missing_field": 1,
        "naive_timestamp": 1,
        "not_an_object": 1,
        "too_large": 1,
        "unknown_schema": 1,
    }
    assert (result.lines, result.events, result.duplicates) == (10, 1, 1)
    assert len(result.decisions) == 1


def test_message_size_limit_comes_from_the_config() -> None:
    config = load_config({"RETENTION_MAX_MESSAGE_BYTES": "256"}, use_stack_file=False)
    big = purchase("pia", T0, "o1")[:-1] + b',"channel":"' + b"w" * 200 + b'"}'
    result = compute_decisions([big], config, until=T0 + 7 * DAY, now=NOW)
    assert result.dead_letters == {"too_large": 1}


# --- configuration and ordering ------------------------------------------------------


def test_ladders_come_from_the_config() -> None:
    env = {"RETENTION_SECOND_PURCHASE_STEPS": "P3D", "RETENTION_INACTIVITY_STEPS": "PT36H,P5D"}
    config = load_config(env, use_stack_file=False)
    result = compute_decisions([purchase("quin", T0, "o1")], config, until=T0 + 10 * DAY, now=NOW)
    assert [(d["rule"], d["step"], d["threshold"], d["due_at"]) for d in result.decisions] == [
        ("inactivity", 1, "P1DT12H", iso(T0 + 36 * HOUR)),
        ("second_purchase", 1, "P3D", at(3)),
        ("inactivity", 2, "P5D", at(5)),
    ]
    assert result.decisions[0]["threshold_seconds"] == 36 * 3600


def test_output_is_ordered_by_due_time_customer_rule_and_step() -> None:
    lines = [purchase("zed", T0, "z1"), purchase("amy", T0, "a1"), purchase("bea", T0 - DAY, "b1")]
    result = run(lines, until=T0 + 14 * DAY)
    assert [(d["due_at"], d["customer_id"], d["rule"], d["step"]) for d in result.decisions] == [
        (at(6), "bea", "second_purchase", 1),
        (at(7), "amy", "second_purchase", 1),
        (at(7), "zed", "second_purchase", 1),
        (at(13), "bea", "second_purchase", 2),
        (at(13), "bea", "inactivity", 1),
        (at(14), "amy", "second_purchase", 2),
        (at(14), "amy", "inactivity", 1),
        (at(14), "zed", "second_purchase", 2),
        (at(14), "zed", "inactivity", 1),
    ]


def test_customer_facts_for_the_reports() -> None:
    lines = [
        session("rui", T0 - DAY),
        purchase("rui", T0, "o1", amount="10.50"),
        purchase("rui", T0 + 12 * DAY, "o2", amount=4.25),
        session("rui", T0 + 40 * DAY),
    ]
    facts = run(lines).facts["rui"]
    assert (facts.order_count, facts.first_order, facts.second_order) == (2, T0, T0 + 12 * DAY)
    assert (facts.last_order, facts.last_session) == (T0 + 12 * DAY, T0 + 40 * DAY)
    assert facts.last_activity == T0 + 40 * DAY
    assert facts.ttsp == 12 * DAY
    assert facts.spend == Decimal("14.75")


def test_the_reference_imports_no_streaming_machinery() -> None:
    code = (
        "import sys, agents.offline.reference\n"
        "roots = {m.split('.')[0] for m in sys.modules}\n"
        "bad = roots & {'faust', 'aiokafka', 'redis', 'mode'}\n"
        "assert not bad, bad\n"
        "engine = {'agents.core.engine', 'agents.customer'} & set(sys.modules)\n"
        "assert not engine, engine\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- properties ----------------------------------------------------------------------

KINDS = ("purchase", "purchase", "session", "session", "consent")


@st.composite
def histories(draw: st.DrawFn) -> list[bytes]:
    """Events of up to three customers, on a coarse grid so that ties with due times occur."""
    n = draw(st.integers(1, 14))
    lines = []
    for i in range(n):
        customer = draw(st.sampled_from(("c1", "c2", "c3")))
        day = draw(st.integers(0, 90))
        t = T0 + day * DAY + draw(st.sampled_from((0, 0, 0, 12 * HOUR)))
        kind = draw(st.sampled_from(KINDS))
        if kind == "purchase":
            lines.append(purchase(customer, t, f"o{i}", event_id=f"p{i}"))
        elif kind == "session":
            lines.append(session(customer, t, event_id=f"s{i}"))
        else:
            lines.append(consent(customer, t, "opted_out"))
    return lines


@settings(max_examples=200, deadline=None)
@given(histories(), st.data())
def test_arrival_order_of_distinct_events_does_not_change_decisions(
    lines: list[bytes], data: st.DataObject
) -> None:
    until = T0 + 200 * DAY
    shuffled = data.draw(st.permutations(lines))
    assert run(shuffled, until).decisions == run(lines, until).decisions


def _state_at(events: list[tuple[str, int]], d: int) -> tuple[int, int | None]:
    """Orders and last activity counting every event dated at or before ``d``."""
    orders = sum(1 for kind, t in events if kind == "purchase" and t <= d)
    activity = [t for kind, t in events if kind in ("purchase", "session") and t <= d]
    return orders, max(activity) if activity else None


@settings(max_examples=200, deadline=None)
@given(histories())
def test_decisions_match_the_rules_evaluated_at_each_due_time(lines: list[bytes]) -> None:
    """docs/rules.md "Rules" read literally: a step fires iff its condition holds at D."""
    until = T0 + 120 * DAY
    per_customer: dict[str, list[tuple[str, int]]] = {}
    for line in lines:
        obj = orjson.loads(line)
        kind = obj["schema"].split("/")[0]
        t = to_micros(datetime.fromisoformat(obj["occurred_at"]))
        per_customer.setdefault(obj["customer_id"], []).append((kind, t))
    expected = set()
    for customer, events in per_customer.items():
        orders = sorted(t for kind, t in events if kind == "purchase")
        if not orders:
            continue
        for step, th in enumerate(CORE.second_purchase.steps, start=1):
            d = orders[0] + th
            if d <= until and _state_at(events, d)[0] == 1:
                expected.add((customer, "second_purchase", step, orders[0], d))
        candidates = {t for kind, t in events if kind in ("purchase", "session")}
        for anchor in candidates:
            for step, th in enumerate(CORE.inactivity.steps, start=1):
                d = anchor + th
                n_orders, last = _state_at(events, d)
                if d <= until and n_orders >= 1 and last == anchor:
                    expected.add((customer, "inactivity", step, anchor, d))
        for anchor in set(orders):
            upto = [t for t in orders if t <= anchor]
            if len(upto) < 3:
                continue
            gaps = [b - a for a, b in itertools.pairwise(upto[-32:])]
            # median of the gaps, an even count's floored to a microsecond
            threshold = max(7 * DAY, 2 * int(statistics.median(gaps)))
            d = anchor + threshold
            if d <= until and max(t for t in orders if t <= d) == anchor:
                expected.add((customer, "overdue", 1, anchor, d))
    result = run(lines, until)
    got = {(f.customer_id, f.rule, f.step, f.anchor, f.due) for f, _ in result.firings}
    assert got == expected
    assert len(result.firings) == len(got)


# --- the earliest accepted event time (docs/time.md "Time") ----------------------------------

YEAR_1 = to_micros(datetime(1, 1, 1, tzinfo=UTC))


def test_a_zero_time_is_an_early_timestamp_dead_letter_as_in_the_stream() -> None:
    # Go's time.Time{} / .NET's DateTime.MinValue from a producer that forgot the
    # time: left out like ingest leaves it out, so nothing fires "on 0001-01-01".
    lines = [purchase("vera", YEAR_1, "o1"), session("vera", YEAR_1), purchase("wim", T0, "o2")]
    result = run(lines, until=T0 + 8 * DAY)
    assert result.dead_letters == {"early_timestamp": 2}
    assert {d["customer_id"] for d in result.decisions} == {"wim"}
    assert "vera" not in result.facts
    assert [r.customer_id for r in result.rows] == ["wim"]


def test_the_reference_takes_the_configured_earliest_time_on_any_day() -> None:
    env = {"RETENTION_MIN_EVENT_TIME": "2020-01-01T00:00:00Z"}
    config = load_config(env, use_stack_file=False)
    y2020 = to_micros(datetime(2020, 1, 1, tzinfo=UTC))
    lines = [purchase("xia", y2020 - 1, "o1"), purchase("yan", y2020, "o2")]
    results = [
        compute_decisions(lines, config, until=y2020 + 8 * DAY, now=now)
        for now in (y2020 + DAY, NOW, NOW + 50 * 365 * DAY)
    ]
    for result in results:  # an absolute instant: the same answer whatever today is
        assert result.dead_letters == {"early_timestamp": 1}
        assert {d["customer_id"] for d in result.decisions} == {"yan"}
    assert results[0].decisions == results[1].decisions == results[2].decisions
