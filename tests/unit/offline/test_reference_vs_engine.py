"""The streaming engine agrees with the offline reference (docs/reports.md "Reports",
docs/design.md).

Small multi-customer histories (purchases with same-instant orders and retries of
an order_id, exact redeliveries, sessions, opt-outs and opt-ins) are written as
JSONL lines; :func:`agents.offline.reference.compute_decisions` reads them in
batch, and the same validated events are fed to the :class:`Engine` one customer
at a time.  Decisions (trigger id, due time, outcome, holdout), conversions and
the report rows must be identical.

Short ladders, a cap of 2 and a 50% control group make every guardrail and the
overdue rule fire often on a 30-day, half-day grid where events often fall
exactly on due times.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, Phase, example, find, given, settings
from hypothesis import strategies as st

from agents.core.emissions import Conversion, Firing
from agents.core.engine import Engine
from agents.core.ids import holdout_bucket
from agents.core.reports import CustomerRow
from agents.core.settings import DAY, HOUR, CoreSettings, LadderSettings
from agents.core.state import CustomerState
from agents.core.timeutil import iso, parse_timestamp, to_micros
from agents.core.validation import validate
from agents.offline.reference import ReferenceResult, compute_decisions
from schemas.records import Event
from streams.config import build_config
from tests.unit.agents import factories as fx
from tests.unit.agents.factories import GUARD_CUSTOMERS, BusyCase, busy_cases

T0 = to_micros(datetime(2026, 3, 2, 10, 0, tzinfo=UTC))
NOW = T0 + 1000 * DAY  # the processor's clock for the future-timestamp check
SLOTS = 60  # events on a half-day grid over 30 days
UNTIL = T0 + 32 * DAY
SALT = "parity"
CORE = CoreSettings(
    second_purchase=LadderSettings("second_purchase", (1 * DAY, 2 * DAY, 4 * DAY)),
    inactivity=LadderSettings("inactivity", (2 * DAY, 4 * DAY, 8 * DAY)),
    holdout_percent=50.0,
    holdout_salt=SALT,
    frequency_cap=2,
    overdue_floor=1 * DAY,
    attribution_window=2 * DAY,
)
MAX_BYTES = 64 * 1024
FUTURE = DAY


def _customers() -> tuple[str, ...]:
    """Three customers outside the control group, then two inside it."""

    def first(n: int, held: bool) -> list[str]:
        ids = (f"cus_{i:04d}" for i in itertools.count())
        return list(itertools.islice((c for c in ids if (holdout_bucket(c, SALT) < 50) == held), n))

    return (*first(3, False), *first(2, True))


CUSTOMERS = _customers()
OUTCOMES = ("delivered", "holdout", "opted_out", "min_gap", "frequency_cap")


# --- building event files --------------------------------------------------------------


def purchase(cid: str, t: int, order_id: str, event_id: str, amount: str = "10.00") -> bytes:
    return orjson.dumps(
        {
            "schema": "purchase/1",
            "event_id": event_id,
            "customer_id": cid,
            "occurred_at": iso(t),
            "order_id": order_id,
            "amount": amount,
            "currency": "EUR",
        }
    )


def session(cid: str, t: int, event_id: str) -> bytes:
    return orjson.dumps(
        {
            "schema": "session/1",
            "event_id": event_id,
            "customer_id": cid,
            "occurred_at": iso(t),
            "session_id": f"s-{event_id}",
        }
    )


def consent(cid: str, t: int, event_id: str, status: str) -> bytes:
    return orjson.dumps(
        {
            "schema": "consent/1",
            "event_id": event_id,
            "customer_id": cid,
            "occurred_at": iso(t),
            "status": status,
        }
    )


KINDS: tuple[str, ...] = ("purchase", "purchase", "purchase", "twin", "retry", "dup")
KINDS += ("session", "session", "opt_out", "opt_in")


# Zones the events carry now and then: kept ones (several at one instant, so the
# tie rule counts) and one ignored (docs/send-windows.md "The customer's zone").
ZONES = (None, "Europe/Berlin", None, "Asia/Tehran", "America/Los_Angeles", "Mars/Olympus_Mons")
ZONES += ("Asia/Kathmandu", None, "US/Eastern")


def with_zone(line: bytes, n: int) -> bytes:
    """The event line with the ``n``-th zone of :data:`ZONES` (none for None)."""
    zone = ZONES[n % len(ZONES)]
    return line if zone is None else orjson.dumps(orjson.loads(line) | {"timezone": zone})


def build(choices: list[tuple[str, int, int, int]]) -> list[bytes]:
    """Event lines from (kind, customer index, half-days after T0, pick) tuples."""
    return [with_zone(line, n) for n, line in enumerate(_build(choices))]


def _build(choices: list[tuple[str, int, int, int]]) -> list[bytes]:
    lines: list[bytes] = []
    orders: dict[str, list[tuple[str, int]]] = {}
    for i, (kind, who, slot, pick) in enumerate(choices):
        cid = CUSTOMERS[who % len(CUSTOMERS)]
        t = T0 + slot * 12 * HOUR
        amount = ("10.00", "5.50", "0", "120")[pick % 4]
        if kind in ("purchase", "twin"):
            for j in range(2 if kind == "twin" else 1):
                oid = f"o{i}-{j}"
                lines.append(purchase(cid, t, oid, f"p{i}-{j}", amount))
                orders.setdefault(cid, []).append((oid, t))
        elif kind == "retry" and orders.get(cid):
            # The same order again under a new event_id: now at its own time or later.
            oid, when = orders[cid][pick % len(orders[cid])]
            lines.append(purchase(cid, when if pick % 2 else t, oid, f"r{i}", amount))
        elif kind == "dup" and lines:
            lines.append(lines[pick % len(lines)])  # at-least-once redelivery
        elif kind == "session":
            lines.append(session(cid, t, f"s{i}"))
        elif kind in ("opt_out", "opt_in"):
            status = "opted_out" if kind == "opt_out" else "opted_in"
            lines.append(consent(cid, t, f"c{i}", status))
    return lines


choice = st.tuples(
    st.sampled_from(KINDS),
    st.integers(0, len(CUSTOMERS) - 1),
    st.integers(0, SLOTS),
    st.integers(0, 11),
)
histories = st.lists(choice, min_size=1, max_size=30).map(build)


def by_time(lines: list[bytes]) -> list[bytes]:
    """The file in time order (file order among equal times), as a live feed would be."""
    return sorted(lines, key=lambda line: _validate(line).occurred_at)


def _validate(line: bytes) -> Event:
    return validate(line, now=NOW, max_bytes=MAX_BYTES, future_tolerance=FUTURE)


# --- the two sides ---------------------------------------------------------------------

Decision = tuple[str, str, str, bool]  # trigger_id, due_at, outcome, holdout
Outcome = tuple[
    str, str, str, str, str, str
]  # trigger_id, group, converted_at, order_id, amount, currency


@dataclasses.dataclass
class Side:
    decisions: dict[str, list[Decision]]  # per customer, in emission order
    conversions: list[Outcome]
    rows: dict[str, CustomerRow]
    zones: dict[str, str | None]  # per customer, the zone in force at ``until``


def reference_side(
    lines: list[bytes], until: int, arrival_order: bool = False, core: CoreSettings = CORE
) -> tuple[Side, ReferenceResult]:
    result = compute_decisions(lines, core, until=until, now=NOW, arrival_order=arrival_order)
    decisions: dict[str, list[Decision]] = {}
    for d in result.decisions:
        decisions.setdefault(d["customer_id"], []).append(
            (d["trigger_id"], d["due_at"], d["outcome"], d["holdout"])
        )
    conversions = sorted(parity_outcome(o) for o in result.outcomes)
    rows = {r.customer_id: r for r in result.rows}
    zones = {cid: facts.zone_at(until) for cid, facts in result.facts.items()}
    return Side(decisions, conversions, rows, zones), result


def parity_outcome(o: dict[str, Any]) -> Outcome:
    """What both sides' outcome/1 records are compared by, the converting order's
    amount and currency too (docs/reports.md "Recovered revenue")."""
    return (
        o["trigger_id"],
        o["group"],
        o["converted_at"],
        o["order_id"],
        o["amount"],
        o["currency"],
    )


def engine_side(
    lines: list[bytes], watermark: Callable[[Event], int], until: int, core: CoreSettings = CORE
) -> Side:
    """Each customer's events in file order, each ingested with ``watermark(event)``."""
    engine = Engine(core)
    per_customer: dict[str, list[Event]] = {}
    for line in lines:
        e = _validate(line)
        per_customer.setdefault(e.customer_id, []).append(e)
    decisions: dict[str, list[Decision]] = {}
    conversions: list[Outcome] = []
    rows: dict[str, CustomerRow] = {}
    zones: dict[str, str | None] = {}
    for cid, events in per_customer.items():
        state = CustomerState(customer_id=cid, partition=0)
        emitted = []
        for e in events:
            emitted += engine.ingest(state, e, watermark(e)) or []
        emitted += engine.advance(state, until)
        for x in emitted:
            if isinstance(x, Firing) and not x.backfill:
                decisions.setdefault(cid, []).append(
                    (x.trigger_id, iso(x.due_at), x.outcome, x.holdout)
                )
            elif isinstance(x, Conversion):
                conversions.append(
                    (
                        x.trigger_id,
                        x.group,
                        iso(x.converted_at),
                        x.order_id,
                        x.amount or "",
                        x.currency or "",
                    )
                )
        rows[cid] = CustomerRow.from_state(state)
        zones[cid] = state.zone
    return Side(decisions, sorted(conversions), rows, zones)


def assert_same(engine: Side, reference: Side) -> None:
    """Decisions, conversions and report rows, field by field.

    With ``until`` before the last event, the engine still holds the later events
    as pending and the reference counts only events up to ``until`` for its
    conversions and rows: both describe the customer as of ``until``.
    """
    assert engine.decisions == reference.decisions
    assert engine.conversions == reference.conversions
    assert engine.zones == reference.zones
    assert engine.rows.keys() == reference.rows.keys()
    for cid, row in reference.rows.items():
        mine = engine.rows[cid]
        for f in dataclasses.fields(CustomerRow):
            assert getattr(mine, f.name) == getattr(row, f.name), (cid, f.name)


def live(until: int) -> Callable[[Event], int]:
    """Arrival in time order: the clock is just short of each event as it arrives
    (and never past ``until``, the end of the run)."""
    return lambda event: min(event.occurred_at - 1, until)


def all_pending(event: Event) -> int:
    """Arrival in any order before the clock starts: dedup in arrival (file) order."""
    return T0 - 1


def check(lines: list[bytes], until: int = UNTIL) -> ReferenceResult:
    """Both feeds agree with the reference: time-ordered live, and any order up front."""
    timed = by_time(lines)
    reference, _ = reference_side(timed, until)
    assert_same(engine_side(timed, live(until), until), reference)
    # Fed in file order, the engine resolves duplicates in arrival order.
    reference_any, result_any = reference_side(lines, until, arrival_order=True)
    assert_same(engine_side(lines, all_pending, until), reference_any)
    return result_any


# --- hand-picked cases -----------------------------------------------------------------

A, B, C, H1, H2 = CUSTOMERS  # A, B, C delivered; H1, H2 in the control group


def every_outcome_case() -> list[bytes]:
    """One history where each outcome, both conversion groups and overdue all occur."""
    d = DAY
    return [
        # A: one order; sp/2 and inactivity/1 are both due at day 2 -> min_gap;
        # cap 2 in 30 days -> frequency_cap later; an order on day 2.5 converts.
        purchase(A, T0, "a1", "a1"),
        purchase(A, T0 + d * 5 // 2, "a2", "a2"),
        # B: opted out from day 0.5, so every firing is opted_out
        purchase(B, T0, "b1", "b1"),
        consent(B, T0 + d // 2, "b-c1", "opted_out"),
        # C: three orders a day apart, then silence: overdue at last + 2 d (floor 1 d)
        purchase(C, T0, "c1", "c1"),
        purchase(C, T0 + d, "c2", "c2"),
        purchase(C, T0 + 2 * d, "c3", "c3"),
        # H1: control group; an order 1.5 d after sp/1 converts as holdout
        purchase(H1, T0, "h1", "h1"),
        purchase(H1, T0 + d * 5 // 2, "h2", "h2"),
    ]


def test_the_hand_picked_case_has_every_outcome_and_both_groups_agree() -> None:
    result = check(every_outcome_case())
    outcomes = Counter(d["outcome"] for d in result.decisions)
    assert set(outcomes) == set(OUTCOMES), outcomes
    assert {o["group"] for o in result.outcomes} == {"delivered", "holdout"}
    assert "overdue" in {d["rule"] for d in result.decisions}


def seeded(seed: int) -> tuple[list[bytes], int]:
    """A bigger history (20-80 events) and a horizon, from a fixed seed."""
    rng = random.Random(seed)
    choices = [
        (
            rng.choice(KINDS),
            rng.randrange(len(CUSTOMERS)),
            rng.randrange(SLOTS + 1),
            rng.randrange(12),
        )
        for _ in range(rng.randrange(20, 80))
    ]
    return build(choices), horizon(rng.randrange(SLOTS + 21))


def horizon(slot: int) -> int:
    """``until`` on the same half-day grid, so it often equals a due time."""
    return T0 + slot * 12 * HOUR


# What a history can exercise: every outcome, the overdue rule, both conversion
# groups, and every lifecycle stage a buyer can end in.
PATHS = (
    *OUTCOMES,
    "rule:overdue",
    "conversion:delivered",
    "conversion:holdout",
    *(f"stage:{s}" for s in ("new", "repeat", "at_risk", "lapsed", "reactivated")),
)


def paths(result: ReferenceResult) -> set[str]:
    out = {d["outcome"] for d in result.decisions}
    out |= {f"rule:{d['rule']}" for d in result.decisions}
    out |= {f"conversion:{o['group']}" for o in result.outcomes}
    out |= {f"stage:{r.stage}" for r in result.rows}
    return out


SEEDS = range(30)


@pytest.mark.parametrize("seed", SEEDS)
def test_seeded_bigger_histories_agree(seed: int) -> None:
    check(*seeded(seed))


def test_the_seeded_histories_cover_every_path() -> None:
    seen: set[str] = set()
    for seed in SEEDS:
        lines, until = seeded(seed)
        seen |= paths(compute_decisions(lines, CORE, until=until, now=NOW))
    assert set(PATHS) <= seen, set(PATHS) - seen


# --- the property --------------------------------------------------------------------------


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories, st.integers(0, SLOTS + 20).map(horizon))
@example(every_outcome_case(), UNTIL)
@example(
    [
        # two orders at the same instant, then a retry of one of them a day later
        purchase(A, T0, "x1", "x1"),
        purchase(A, T0, "x2", "x2"),
        purchase(A, T0 + DAY, "x1", "x1-retry"),
        session(A, T0 + 2 * DAY, "s1"),
    ],
    UNTIL,
)
@example(
    [
        # an opt-out and an opt-in at the same instant: the opt-out wins, whatever
        # arrives first; a retry dated before its original does not move the order
        purchase(B, T0 + 2 * DAY, "y1", "y1"),
        consent(B, T0 + 3 * DAY, "c-in", "opted_in"),
        consent(B, T0 + 3 * DAY, "c-out", "opted_out"),
        consent(B, T0 + 3 * DAY, "c-in-again", "opted_in"),
        purchase(B, T0, "y1", "y1-retry"),
        session(B, T0 + 3 * DAY, "s-b"),
    ],
    T0 + 20 * DAY,
)
def test_engine_and_reference_agree(lines: list[bytes], until: int) -> None:
    check(lines, until)


@pytest.mark.parametrize("what", PATHS)
def test_the_generator_reaches(what: str) -> None:
    """The property above is only worth something if its inputs exercise every path."""
    found: Any = find(
        st.tuples(histories, st.integers(0, SLOTS + 20).map(horizon)),
        lambda case: what in paths(compute_decisions(case[0], CORE, until=case[1], now=NOW)),
        settings=settings(max_examples=3000, database=None, deadline=None, phases=[Phase.generate]),
    )
    lines, until = found
    assert what in paths(compute_decisions(lines, CORE, until=until, now=NOW))


def test_a_retry_dated_later_counts_at_the_earliest_time_whatever_the_file_order() -> None:
    """An order delivered twice under two event ids and two times: the report (and so
    ``retention replay``, which sorts the file by time) counts it at the earlier time,
    for the file in time order and reversed alike; fed in time order the engine agrees.
    """
    d = DAY
    lines = [
        purchase(A, T0, "o1", "p1", "10.00"),
        purchase(A, T0 + 3 * d, "o2", "p2", "20.00"),
        purchase(A, T0 + 5 * d, "o2", "p2-retry", "20.00"),  # the same order, dated later
        session(A, T0 + 6 * d, "s1"),
    ]
    forward, forward_result = reference_side(lines, UNTIL)
    backward, _ = reference_side(lines[::-1], UNTIL)
    assert forward.decisions == backward.decisions
    assert forward.rows == backward.rows
    # The second purchase is the order at T0 + 3 days, not the retry's T0 + 5 days.
    assert forward_result.facts[A].order_times[:2] == (T0, T0 + 3 * d)
    assert forward_result.order_retries == 1
    assert_same(engine_side(by_time(lines[::-1]), live(UNTIL), UNTIL), forward)
    # Read as a live feed's arrival order, the reversed file counts the retry's time.
    _, arrival = reference_side(lines[::-1], UNTIL, arrival_order=True)
    assert arrival.facts[A].order_times[:2] == (T0, T0 + 5 * d)


# --- guardrails under any ladder the configuration accepts (docs/guardrails.md "Guardrails") -


def assert_gap_and_cap_hold(decisions: dict[str, list[Decision]], core: CoreSettings) -> None:
    """For every delivered nudge due at D: fewer than ``frequency_cap`` other delivered
    nudges due in (D - window, D], and none in (D - min gap, D]."""
    for cid, made in decisions.items():
        due = [to_micros(parse_timestamp(d)) for _, d, outcome, _ in made if outcome == "delivered"]
        for i, d in enumerate(due):
            others = due[:i] + due[i + 1 :]
            in_window = [t for t in others if d - core.frequency_window < t <= d]
            assert len(in_window) < core.frequency_cap, (cid, iso(d), len(in_window))
            assert not [t for t in others if d - core.min_gap < t <= d], (cid, iso(d))


def figure(steps: str, every: int, span: int, **raw: Any) -> BusyCase:
    """One of issue 17's figures (tests/unit/agents/core/test_guardrails.py): an order,
    then a session every ``every`` micros for ``span``, nobody held out."""
    given_raw = {"inactivity_steps": steps, "holdout_percent": 0, **raw}
    cid = GUARD_CUSTOMERS[1]
    events = [fx.purchase(cid, T0, "o0", event_id="p0")] + [
        fx.session(cid, t, event_id=f"s{t}") for t in range(T0 + every, T0 + span + 1, every)
    ]
    return BusyCase(given_raw, build_config(given_raw).core, events, T0 + span)


def ten(unit: str) -> str:
    return ",".join(fx.duration(k, unit) for k in range(1, 11))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(busy_cases())
@example(figure(ten("H"), 11 * HOUR, 31 * DAY))
@example(figure(ten("M"), 11 * fx.MINUTE, 3 * DAY))
@example(figure("PT1M", 2 * fx.MINUTE, 20 * HOUR, min_gap="PT1M", frequency_cap=200))
def test_gap_and_cap_hold_for_any_accepted_ladder_and_engine_equals_reference(
    case: BusyCase,
) -> None:
    """Short ladders and busy customers make hundreds of firings, mostly suppressed:
    the stream engine and the reference both keep the gap and the cap, and agree on
    every decision, conversion and report row."""
    lines = [fx.line_of(e) for e in case.events]
    reference, _ = reference_side(lines, case.until, core=case.core)
    engine = engine_side(lines, live(case.until), case.until, core=case.core)
    assert_gap_and_cap_hold(reference.decisions, case.core)
    assert_gap_and_cap_hold(engine.decisions, case.core)
    assert_same(engine, reference)


def needs_more_than_128(case: BusyCase) -> bool:
    """A min_gap or frequency_cap verdict that rests on a delivered nudge decided more
    than 128 firings earlier: what a record that kept its newest 128 forgot."""
    result = compute_decisions(
        [fx.line_of(e) for e in case.events], case.core, until=case.until, now=NOW
    )
    per_customer: dict[str, list[tuple[int, str]]] = {}
    for d in result.decisions:
        due = to_micros(parse_timestamp(d["due_at"]))
        per_customer.setdefault(d["customer_id"], []).append((due, d["outcome"]))
    core = case.core
    for made in per_customer.values():
        for j, (due, outcome) in enumerate(made):
            span = {"min_gap": core.min_gap, "frequency_cap": core.frequency_window}.get(outcome)
            if span is None:
                continue
            behind = [i for i, (t, o) in enumerate(made[:j]) if o == "delivered" and t > due - span]
            needed = behind[-1:] if outcome == "min_gap" else behind[-core.frequency_cap :]
            if needed and j - needed[0] > 128:
                return True
    return False


def test_the_busy_cases_reach_what_the_record_used_to_forget() -> None:
    """The property above is only worth something if its histories make verdicts
    that need a delivered nudge from more than 128 firings back."""
    found: BusyCase = find(
        busy_cases(),
        needs_more_than_128,
        settings=settings(max_examples=3000, database=None, deadline=None, phases=[Phase.generate]),
    )
    assert needs_more_than_128(found)


# --- the customer's zone (docs/send-windows.md "The customer's zone") ------------------

zone_histories = st.lists(
    st.tuples(st.integers(0, 6), st.sampled_from(ZONES), st.sampled_from(KINDS)),
    min_size=1,
    max_size=12,
)


def zoned_lines(history: list[tuple[int, str | None, str]]) -> list[bytes]:
    """One customer's events an hour apart at most (many at one instant), each with
    its own ids and a zone, an ignored name or none."""
    lines = []
    for i, (slot, zone, kind) in enumerate(history):
        t = T0 + slot * HOUR
        if kind in ("session", "dup", "retry"):
            line = session(A, t, f"s{i}")
        elif kind in ("opt_out", "opt_in"):
            line = consent(A, t, f"c{i}", "opted_out" if kind == "opt_out" else "opted_in")
        else:
            line = purchase(A, t, f"o{i}", f"p{i}")
        lines.append(
            line if zone is None else orjson.dumps(orjson.loads(line) | {"timezone": zone})
        )
    return lines


@settings(max_examples=300, deadline=None)
@given(zone_histories, st.randoms(use_true_random=False))
def test_engine_and_reference_agree_on_the_zone_in_force_at_every_instant(
    history: list[tuple[int, str | None, str]], rnd: random.Random
) -> None:
    lines = zoned_lines(history)
    rnd.shuffle(lines)  # any arrival order
    facts = compute_decisions(lines, CORE, now=NOW, arrival_order=True).facts[A]
    engine = Engine(CORE)
    waiting = CustomerState(customer_id=A, partition=0)  # all dated after the clock
    late = CustomerState(customer_id=A, partition=0)  # all behind it, applied at once
    for line in lines:
        engine.ingest(waiting, _validate(line), T0 - 1)
        engine.ingest(late, _validate(line), T0 + 7 * HOUR)
    assert late.zone == facts.zone_at(T0 + 7 * HOUR)
    for minutes in range(-1, 7 * 60, 30):
        at = T0 + minutes * 60_000_000
        engine.advance(waiting, at)
        assert waiting.zone == facts.zone_at(at), iso(at)
    assert waiting.to_dict().get("tz") == late.to_dict().get("tz")  # the same row


def test_the_zone_in_force_is_the_newest_valid_one_and_the_smallest_name_at_a_tie() -> None:
    lines = zoned_lines(
        [
            (2, "Mars/Olympus_Mons", "session"),  # newest, but ignored
            (1, "Europe/Berlin", "purchase"),
            (1, "Asia/Tehran", "session"),  # same instant: the smaller name
            (0, "US/Eastern", "opt_in"),
        ]
    )
    facts = compute_decisions(lines, CORE, now=NOW).facts[A]
    assert [facts.zone_at(T0 + h * HOUR) for h in (-1, 0, 1, 2, 3)] == [
        None,
        "US/Eastern",
        "Asia/Tehran",
        "Asia/Tehran",
        "Asia/Tehran",
    ]
    state = CustomerState(customer_id=A, partition=0)
    for line in reversed(lines):
        Engine(CORE).ingest(state, _validate(line), T0 + 3 * HOUR)
    assert state.to_dict()["tz"] == ["Asia/Tehran", T0 + HOUR]
    assert state.to_dict()["tzx"] == ["Mars/Olympus_Mons", T0 + 2 * HOUR]
