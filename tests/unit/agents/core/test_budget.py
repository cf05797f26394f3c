"""The byte budget of one customer (agents.core.budget, docs/budget.md "Byte budget").

No sequence of valid inputs makes a row or an output record exceed 256 KiB; a
future-dated event is refused (``pending_overflow``) only past the hostile-input
cap, never applied early, and not remembered; rows written by the previous
version still load.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agents.core.budget import (
    CHURN_RESERVE,
    CODE_CUSTOMER_OVER_BUDGET,
    CODE_PENDING_OVERFLOW,
    DEFERRED_BUDGET,
    FIRINGS_BUDGET,
    FIXED_ROW_BOUND,
    LIFECYCLE_BUDGET,
    MAX_CURRENCIES,
    MAX_DEFERRED_ENTRY_BYTES,
    MAX_FIRING_ENTRY_BYTES,
    OTHER_CURRENCY,
    OUTPUT_BUDGET,
    ROW_BUDGET,
    ROW_PENDING_BUDGET,
    WINDOW_RESERVE,
    FiringMemory,
    entry_size,
    firing_entry_bytes,
    firing_memory,
)
from agents.core.emissions import Due, Firing, Refused
from agents.core.engine import Engine
from agents.core.guardrails import (
    ATTRIBUTED,
    DECISION_OUTCOMES,
    OUTCOME_SKIPPED,
    OUTCOMES,
    WINDOW_OUTCOMES,
)
from agents.core.prediction import NbdParams
from agents.core.rules import load_rules
from agents.core.rules.anchors import LastOrder
from agents.core.rules.check import check_rules
from agents.core.rules.model import MAX_RULES, MAX_TOTAL_STEPS, RuleSet
from agents.core.rules.steps import PAliveBelow
from agents.core.settings import DAY, HOUR, CoreSettings, LadderSettings
from agents.core.state import (
    CountKey,
    CustomerState,
    DeferredFiring,
    LadderProgress,
    RecentFiring,
    pending_entry,
)
from agents.core.timeutil import to_micros
from agents.core.windows import parse_send_window
from agents.core.zones import MAX_ZONE_NAME
from agents.messages import decision_record, dumps
from schemas.records import Event
from streams.config import build_config
from tests.unit.agents.factories import (
    GUARD_CUSTOMERS,
    MINUTE,
    BusyCase,
    busy_cases,
    duration,
    purchase,
    session,
)

T0 = to_micros(datetime(2026, 1, 1, tzinfo=UTC))
# The longest zone name tzdata has (32 characters): a fixed zone of a send window.
ZONE = "America/Argentina/ComodRivadavia"
# The widest id validation accepts: 128 characters that JSON escapes to 6 bytes.
WIDE = "\x01" * 128


def row_size(state: CustomerState) -> int:
    return len(orjson.dumps(state.to_dict()))


def firings_size(state: CustomerState) -> int:
    """Bytes of the firings the row remembers."""
    return len(orjson.dumps(state.to_dict()["recent_firings"]))


# The row keys of the lifecycle's facts (docs/budget.md "Lifecycle").
LIFECYCLE_KEYS = ("su", "fs", "vw", "ct", "fc", "ol", "cx", "cn", "rr")
# What everything but the firings and the lifecycle's facts stays within.
REST_BOUND = FIXED_ROW_BOUND - FIRINGS_BUDGET - LIFECYCLE_BUDGET


def lifecycle_size(state: CustomerState) -> int:
    """Bytes of the lifecycle's row keys (with their names)."""
    row = state.to_dict()
    return len(orjson.dumps({k: row[k] for k in LIFECYCLE_KEYS if k in row}))


def rest_size(state: CustomerState) -> int:
    """Bytes of the row but the firings and the lifecycle's facts."""
    return row_size(state) - firings_size(state) - lifecycle_size(state)


def wide_purchase(n: int, t: int, currency: str = "EUR", cid: str = WIDE) -> Event:
    return Event(
        "purchase",
        f"{n:08d}" + WIDE[8:],
        cid,
        t,
        order_id=f"{n:08d}" + WIDE[8:],
        amount="9" * 16 + "." + "9" * 15,
        currency=currency,
        channel="c" * 256,
        # The widest zone a row or a waiting entry keeps: an ignored name at its 64
        # characters (docs/send-windows.md "The customer's zone").
        timezone_ignored="~" * 64,
    )


def check_records(fired: list[Any] | Refused | None) -> None:
    if not isinstance(fired, list):
        return
    for f in fired:
        if isinstance(f, Firing):
            record = decision_record(
                f, fired_at=T0, clock="stream", outcome=f.outcome, holdout=False
            )
            assert len(dumps(record.to_dict())) <= OUTPUT_BUDGET
            assert len(dumps(record.nudge_dict())) <= OUTPUT_BUDGET


# --- the worst case, built on purpose -------------------------------------------------


def largest_accepted_cap(core: CoreSettings) -> int:
    """The highest frequency cap whose firing memory fits with these settings."""
    return next(c for c in range(1000, 0, -1) if firing_memory(replace(core, frequency_cap=c)).fits)


def test_worst_case_row_stays_within_the_budget() -> None:
    """Every bounded part at its bound at once: wide ids, 40 currencies, 10-step
    ladders with every outcome, the highest cap the firing memory allows, thousands
    of orders and sessions, full pending."""
    ten = tuple((i + 1) * DAY for i in range(10))
    core = CoreSettings(
        second_purchase=LadderSettings("second_purchase", ten),
        inactivity=LadderSettings("inactivity", ten),
        holdout_percent=0.0,
        min_gap=HOUR,
    )
    core = replace(core, frequency_cap=largest_accepted_cap(core))
    engine = Engine(core)
    state = CustomerState(customer_id=WIDE, partition=0)
    codes = [a + b + "Q" for a in "ABCDEFGH" for b in "ABCDE"]  # 40 currencies
    t = T0
    for n in range(3000):
        t += (n % 97) * HOUR * 7 + 1  # irregular gaps: ladders fire, anchors move, spans break
        fired = engine.ingest(state, wide_purchase(n, t, codes[n % len(codes)]), t)
        assert not isinstance(fired, Refused)
        check_records(fired)
    assert len(state.spend) == MAX_CURRENCIES + 1 and OTHER_CURRENCY in state.spend
    assert state.to_dict()["tzx"][0] == "~" * 64
    fixed = row_size(state)
    assert fixed <= FIXED_ROW_BOUND, fixed
    # Everything but the firings leaves the firing memory its whole budget; with the
    # memory full of the widest entries the row is still within its bound.
    assert rest_size(state) <= REST_BOUND
    assert lifecycle_size(state) <= LIFECYCLE_BUDGET
    widest = RecentFiring(-(2**62), "second_purchase", 10, -(2**62), "frequency_cap", -(2**62))
    full = CustomerState.from_dict(state.to_dict())
    full.recent_firings = [widest] * engine.memory.entries
    assert firings_size(full) <= FIRINGS_BUDGET
    assert row_size(full) <= FIXED_ROW_BOUND, row_size(full)
    # With send windows (docs/send-windows.md "Deferred firings"): every firing
    # remembered with its send time, within the windowed memory's bytes, and a kept
    # firing for each of the most rules a file may have, each at its widest.
    windowed = replace(widest, sent_at=-(2**62))
    entries = FIRINGS_BUDGET // firing_entry_bytes("second_purchase", windowed=True)
    full.recent_firings = [windowed] * min(engine.memory.entries, entries)
    full.deferred = [WIDEST_DEFERRED] * MAX_RULES
    assert firings_size(full) <= FIRINGS_BUDGET
    assert len(orjson.dumps(full.to_dict()["df"])) + 6 <= DEFERRED_BUDGET
    assert rest_size(full) <= REST_BOUND
    assert row_size(full) <= FIXED_ROW_BOUND, row_size(full)
    # Now fill pending with future-dated events until it refuses.
    refused = 0
    for n in range(3000, 6000):
        fired = engine.ingest(state, wide_purchase(n, t + DAY + n, "EUR"), t)
        refused += isinstance(fired, Refused)
    assert refused > 0
    # The row keeps its share; the rest is in overflow rows, each within the budget.
    chunks, _ = state.spill.flush()
    assert len(chunks) > 20 and all(len(c) <= ROW_BUDGET for c in chunks.values())
    assert state.pending_bytes() + state.spill.index_bytes() <= ROW_PENDING_BUDGET
    assert row_size(state) <= ROW_BUDGET
    assert len(orjson.dumps(state.to_dict())) <= ROW_BUDGET


WIDEST_DEFERRED = DeferredFiring(
    "r" * 40, 99, -(2**62), -(2**62), -(2**62), -(2**62), "f" * 12, "Z" * MAX_ZONE_NAME
)


def test_every_rule_deferring_at_once_keeps_its_kept_firings_within_their_budget() -> None:
    """The most rules a file may have, each with a window its step falls outside of:
    one kept firing per rule in the row, within DEFERRED_BUDGET, each as wide as the
    widest the budget assumes."""
    engine = Engine(CoreSettings(rules=with_windows(load_rules(largest_rules_file(4)))))
    state = CustomerState(customer_id=WIDE, partition=0)
    t = to_micros(datetime(2026, 1, 1, 11, tzinfo=UTC))
    fired = engine.ingest(state, wide_purchase(0, t), t)
    assert isinstance(fired, list)
    fired += engine.advance(state, t + DAY)
    assert fired == []  # everything waits for 09:00 on the 2nd
    df = state.to_dict()["df"]
    assert len(df) == MAX_RULES and {x[7] for x in df} == {ZONE}
    assert len(orjson.dumps(df)) + 6 <= DEFERRED_BUDGET
    assert max(len(orjson.dumps(x)) + 1 for x in df) <= MAX_DEFERRED_ENTRY_BYTES
    assert len(orjson.dumps(CustomerState.from_dict(state.to_dict()).to_dict())) == row_size(state)


def largest_rules_file(cap: int) -> str:
    """The largest file ``load_rules`` accepts: 16 rules with 40-character names and 40
    steps in all, every rule arbitrating (so every outcome can be counted)."""
    parts = [
        f'format = 1\n[guardrails]\nholdout_percent = 0\nmin_gap = "PT1H"\n'
        f"frequency_cap = {cap}\narbitration = true\n"
    ]
    for i in range(MAX_RULES):
        n = 7 if i < 4 else 1
        steps = ", ".join(f'"P{d + 1}D"' for d in range(n))
        parts.append(
            f'[[rule]]\nname = "{chr(97 + i) * 40}"\npriority = {100 + i}\n'
            f'anchor = "first_order"\nsteps = [{steps}]\n'
        )
    return "".join(parts)


def with_windows(rules: RuleSet) -> RuleSet:
    """Every rule of ``rules`` with a send window (fixed zone at the longest name)."""
    night = parse_send_window({"windows": [{"days": "all", "open": "09:00", "close": "10:00"}]})
    assert night[0] is not None
    windowed = tuple(replace(r, send_window=replace(night[0], zone=ZONE)) for r in rules.rules)
    return RuleSet(windowed, rules.guardrails, rules.lifecycle, rules.format)


def as_churn(rules: RuleSet) -> RuleSet:
    """Every rule of ``rules`` a churn_risk ladder of as many steps (docs/prediction.md
    "The churn_risk rule")."""
    params = NbdParams("mbgnbd", 0.5248, 6.183, 0.8914, 1.614)
    churn = tuple(
        replace(
            r,
            anchor=LastOrder(),
            steps=tuple(PAliveBelow(0.9 - 0.1 * k, params) for k in range(len(r.steps))),
        )
        for r in rules.rules
    )
    return RuleSet(churn, rules.guardrails, rules.lifecycle, rules.format)


def largest_file_row(windowed: bool, churn: bool = False) -> tuple[Engine, CustomerState]:
    """The largest accepted rules file (with a send window on every rule when
    ``windowed``, every rule a churn_risk ladder when ``churn``) on the worst-case
    customer: every count at its widest, every ladder pinned, the last switch kept,
    every rule's kept firing at its widest."""
    cap = next(c for c in range(1000, 0, -1) if not check_rules(largest_rules_file(c)))
    rules = load_rules(largest_rules_file(cap))
    assert len(rules.active) == MAX_RULES
    assert sum(len(r.steps) for r in rules.active) == MAX_TOTAL_STEPS
    # One step more is refused: the bound is the one this test measures.
    assert check_rules(largest_rules_file(cap).replace('"P1D"]', '"P1D", "P2D"]', 1))
    # "skipped" is counted only for churn_risk steps.
    outcomes = tuple(o for o in DECISION_OUTCOMES if o != OUTCOME_SKIPPED)
    if churn:
        # The highest cap whose memory fits once churn_risk steps take their reserve.
        cap = next(
            c
            for c in range(cap, 0, -1)
            if firing_memory(CoreSettings(rules=as_churn(load_rules(largest_rules_file(c))))).fits
        )
        rules = as_churn(load_rules(largest_rules_file(cap)))
        outcomes += (OUTCOME_SKIPPED,)
    if windowed:
        # The highest cap whose memory fits once windows take their reserve.
        cap = next(
            c
            for c in range(cap, 0, -1)
            if firing_memory(
                CoreSettings(rules=with_windows(load_rules(largest_rules_file(c))))
            ).fits
        )
        rules = with_windows(load_rules(largest_rules_file(cap)))
        outcomes += WINDOW_OUTCOMES
    engine = Engine(CoreSettings(rules=rules, min_gap=HOUR))
    state = CustomerState(customer_id=WIDE, partition=0)
    codes = [a + b + "Q" for a in "ABCDEFGH" for b in "ABCDE"]
    t = T0
    for n in range(3000):
        t += (n % 97) * HOUR * 7 + 1
        fired = engine.ingest(state, wide_purchase(n, t, codes[n % len(codes)]), t)
        assert not isinstance(fired, Refused)
    many = 10**15
    state.rules_at = -(2**62)
    for rule in rules.active:
        state.ladders[rule.name] = LadderProgress(-(2**62), len(rule.steps), "f" * 12)
        for step in range(1, len(rule.steps) + 1):
            for outcome in outcomes:
                state.decision_counts[CountKey(rule.name, step, outcome)] = many
            for group in ATTRIBUTED:
                state.conversion_counts[CountKey(rule.name, step, group)] = many
    state.deferred = [WIDEST_DEFERRED] * MAX_RULES if windowed else []
    return engine, state


def test_the_largest_accepted_rules_file_keeps_the_row_within_the_budget() -> None:
    """Every (rule, step, outcome) and (rule, step, group) counted (superseded too),
    every rule's progress pinned to an older rules version, the last switch, the
    firing memory full of its widest entries, on the worst-case customer above:
    still within the row's bound (docs/budget.md "Byte budget")."""
    engine, state = largest_file_row(windowed=False)
    longest = engine.rules[0].name
    widest = RecentFiring(-(2**62), longest, 10, -(2**62), "frequency_cap", -(2**62))
    wide_entry = [-(2**62), longest, 99, -(2**62), "frequency_cap", -(2**62)]
    assert engine.memory.entry_bytes == len(orjson.dumps(wide_entry)) + 1
    rest = rest_size(state)
    assert rest <= REST_BOUND, rest
    state.recent_firings = [widest] * engine.memory.entries
    assert firings_size(state) <= FIRINGS_BUDGET
    assert row_size(state) <= FIXED_ROW_BOUND, row_size(state)


def test_with_churn_risk_rules_the_largest_file_still_keeps_the_row_within_the_budget() -> None:
    """Every rule a churn_risk ladder: the counts of ``skipped`` for every step fit in
    the reserve the churn rules take from the firings' budget, and the order-day
    bitmap at its widest (27 years of order days) in the rest of the row
    (docs/budget.md "Byte budget")."""
    engine, state = largest_file_row(windowed=False, churn=True)
    assert engine.memory.reserve == CHURN_RESERVE
    assert len(orjson.dumps(state.to_dict()["od"])) <= 1700
    longest = engine.rules[0].name
    widest = RecentFiring(-(2**62), longest, 10, -(2**62), "frequency_cap", -(2**62))
    state.recent_firings = [widest] * engine.memory.entries
    assert firings_size(state) <= FIRINGS_BUDGET - CHURN_RESERVE
    assert row_size(state) <= FIXED_ROW_BOUND, row_size(state)


def test_with_send_windows_the_largest_file_still_keeps_the_row_within_the_budget() -> None:
    """The same with a send window on every rule: the counts of ``outside_window``
    and ``cancelled`` and a kept firing per rule fit in the reserve the windows take
    from the firings' budget (docs/budget.md "Byte budget")."""
    engine, state = largest_file_row(windowed=True)
    assert engine.memory.reserve == WINDOW_RESERVE
    longest = engine.rules[0].name
    widest = RecentFiring(-(2**62), longest, 10, -(2**62), "frequency_cap", -(2**62), -(2**62))
    assert engine.memory.entry_bytes == len(orjson.dumps(widest_wire(widest))) + 1
    state.recent_firings = [widest] * engine.memory.entries
    assert firings_size(state) <= FIRINGS_BUDGET - WINDOW_RESERVE
    assert len(orjson.dumps(state.to_dict()["df"])) + 6 <= DEFERRED_BUDGET
    assert row_size(state) <= FIXED_ROW_BOUND, row_size(state)


def widest_wire(f: RecentFiring) -> list[object]:
    """``f`` as a row stores it."""
    row = {"customer_id": "c", "recent_firings": [[*vars_of(f)]]}
    wire: list[object] = CustomerState.from_dict(row).to_dict()["recent_firings"][0]
    return wire


def vars_of(f: RecentFiring) -> list[object]:
    return [f.due_at, f.rule, f.step, f.anchor_at, f.outcome, f.converted_at, f.sent_at]


# --- any sequence of valid inputs ------------------------------------------------------

ids = st.one_of(st.sampled_from(["a", "b", "c", WIDE]), st.text(min_size=1, max_size=128))
currencies = st.sampled_from(
    ["EUR", "USD", "XXX", "AAA", "ZZZ"] + [f"Q{c}{d}" for c in "ABCDEF" for d in "XYZ"]
)


@st.composite
def feeds(draw: st.DrawFn) -> list[tuple[Event, int]]:
    """(event, watermark) pairs: a customer with any mix of kinds, times and clocks."""
    cid = draw(st.sampled_from(["cus-1", WIDE]))
    out: list[tuple[Event, int]] = []
    clock = T0
    for n in range(draw(st.integers(1, 200))):
        clock += draw(st.integers(0, 3 * DAY))
        t = clock + draw(st.integers(-10 * DAY, 5 * DAY))
        kind = draw(st.sampled_from(["purchase", "purchase", "session", "consent"]))
        eid = draw(ids) if draw(st.integers(0, 9)) == 0 else f"e{n}-" + WIDE[:100]
        if kind == "purchase":
            event = Event(
                kind,
                eid,
                cid,
                t,
                order_id=draw(ids),
                currency=draw(currencies),
                amount=draw(
                    st.sampled_from(
                        [
                            "0",
                            "10.50",
                            "9" * 16 + "." + "9" * 15,
                            "0.0000000000000012345678901234567",
                        ]
                    )
                ),
                channel=draw(st.sampled_from([None, "w" * 256])),
            )
        elif kind == "session":
            event = Event(kind, eid, cid, t, session_id=draw(ids), channel="x" * 256)
        else:
            event = Event(
                kind, eid, cid, t, status=draw(st.sampled_from(["opted_out", "opted_in"]))
            )
        out.append((event, clock))
    return out


SMALL = CoreSettings(
    second_purchase=LadderSettings("second_purchase", (DAY, 2 * DAY)),
    inactivity=LadderSettings("inactivity", (DAY, 3 * DAY)),
    max_pending_events=40,
    min_gap=HOUR,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(feeds())
def test_any_valid_inputs_keep_row_and_records_within_budget(feed: list[tuple[Event, int]]) -> None:
    for core in (SMALL, CoreSettings()):
        engine = Engine(core)
        state = CustomerState(customer_id=feed[0][0].customer_id, partition=0)
        for event, clock in feed:
            fired = engine.ingest(state, event, clock)
            check_records(fired)
            if isinstance(fired, Refused):
                assert fired.code == CODE_PENDING_OVERFLOW
            # The processor writes the row after every event: it never grows past it.
            assert row_size(state) <= ROW_BUDGET
            state = CustomerState.from_dict(orjson.loads(orjson.dumps(state.to_dict())))
        assert len(state.pending) <= core.max_pending_events
        assert len([c for c in state.spend if c != OTHER_CURRENCY]) <= MAX_CURRENCIES


# --- pending never applied early ------------------------------------------------------


def session_at(i: int, cid: str = "cus-p") -> Event:
    return Event("session", f"s{i}", cid, T0 + 20 * DAY + i, session_id="x")


LATE_ORDER = Event(
    "purchase", "p1", "cus-p", T0 + 10 * DAY, order_id="o1", amount="5", currency="EUR"
)


def cap_for(n_sessions: int) -> int:
    """A hostile-input cap with room for ``n_sessions`` sessions and the late order
    but one byte short of the order after one more session."""
    sizes = [entry_size(pending_entry(session_at(i))) for i in range(n_sessions)]
    return sum(sizes) + entry_size(pending_entry(LATE_ORDER)) - 1


def sessions_then_order(n_sessions: int, cap_bytes: int) -> tuple[list[Any], list[Any]]:
    """n future-dated sessions, then an order dated before them, all ahead of the clock.
    The row keeps 8 of them; the rest wait in overflow rows."""
    core = CoreSettings(max_pending_events=8, max_pending_bytes=cap_bytes, holdout_percent=0.0)
    engine = Engine(core)
    state = CustomerState(customer_id="cus-p", partition=0)
    first = Event("purchase", "p0", "cus-p", T0, order_id="o0", amount="5", currency="EUR")
    assert engine.ingest(state, first, T0) == []
    results = [engine.ingest(state, session_at(i), T0) for i in range(n_sessions)]
    results.append(engine.ingest(state, LATE_ORDER, T0))
    fired = engine.advance(state, T0 + 100 * DAY)
    return results, [(f.rule, f.step, f.due_at) for f in fired if isinstance(f, Firing)]


def test_only_the_hostile_cap_refuses_deterministically_and_never_applies_early() -> None:
    cap = cap_for(50)
    below, fired_below = sessions_then_order(49, cap)
    at, fired_at = sessions_then_order(50, cap)
    # Far beyond the row's share of 8, nothing is refused below the cap.
    assert not any(isinstance(r, Refused) for r in below)
    # At the cap the order is refused - not applied ahead of its time.
    (refusal,) = [r for r in at if isinstance(r, Refused)]
    assert refusal.code == CODE_PENDING_OVERFLOW
    assert "50 events" in refusal.reason and f"cap: {cap} bytes" in refusal.reason
    assert at[-1] is refusal
    # Without the order, second_purchase fires its steps on day 7, 14 and 30 (the
    # sessions at day 20 are activity, not orders); with it, only day 7.
    assert [r for r, _, _ in fired_below if r == "second_purchase"] == ["second_purchase"]
    assert [r for r, _, _ in fired_at if r == "second_purchase"] == ["second_purchase"] * 3
    # Same input, same outcome, every time.
    assert sessions_then_order(50, cap) == (at, fired_at)


def test_a_refused_event_changes_nothing_and_a_re_send_is_applied() -> None:
    size = entry_size(pending_entry(Event("session", "s0", "c", T0 + DAY, session_id="x")))
    engine = Engine(CoreSettings(max_pending_events=1, max_pending_bytes=2 * size))
    state = CustomerState(customer_id="c", partition=0)
    for i in range(2):
        assert (
            engine.ingest(state, Event("session", f"s{i}", "c", T0 + DAY + i, session_id="x"), T0)
            == []
        )
    before = state.to_dict()
    third = Event("session", "s2", "c", T0 + DAY + 5, session_id="x")
    assert isinstance(engine.ingest(state, third, T0), Refused)
    assert state.to_dict() == before  # its ids included: nothing of it is kept
    # Sent again once the clock has applied the first one, it is taken in: the
    # dead letter was not the end of it (issue: the loss was permanent).
    assert engine.ingest(state, third, T0 + DAY) == []
    engine.advance(state, T0 + 2 * DAY)
    assert state.last_session_at == T0 + DAY + 5 and state.pending_count() == 0
    assert engine.ingest(state, third, T0 + 2 * DAY) is None  # now it is a duplicate


def test_pending_keeps_only_what_the_engine_needs() -> None:
    engine = Engine(CoreSettings())
    state = CustomerState(customer_id="c", partition=0)
    order = Event(
        "purchase", "e1", "c", T0 + DAY, order_id="o1", amount="5", currency="EUR", channel="web"
    )
    session = Event("session", "e2", "c", T0 + DAY, session_id="s1", channel="app")
    engine.ingest(state, order, T0)
    engine.ingest(state, session, T0)
    consent = Event(
        "consent", "e3", "c", T0 + DAY, status="opted_in", channel="app", timezone="Asia/Tehran"
    )
    engine.ingest(state, consent, T0)
    assert state.pending == [
        {"k": "purchase", "e": "e1", "t": T0 + DAY, "o": "o1", "a": "5", "cur": "EUR"},
        {"k": "session", "e": "e2", "t": T0 + DAY},
        {"k": "consent", "e": "e3", "t": T0 + DAY, "st": "opted_in", "tz": "Asia/Tehran"},
    ]
    assert state.zone is None  # waiting like the rest of the event
    engine.advance(state, T0 + DAY)
    assert state.orders == 1 and state.last_session_at == T0 + DAY and state.pending == []
    assert (state.zone, state.zone_at) == ("Asia/Tehran", T0 + DAY)


# --- rows written by the previous version ---------------------------------------------


def old_row(pending: int, wide: bool = False) -> dict[str, Any]:
    """A row as the version before the byte budget wrote it."""
    cid = WIDE if wide else "cus-old"
    return {
        "customer_id": cid,
        "partition": 1,
        "version": 7,
        "orders": 2,
        "first_order_at": T0,
        "second_order_at": T0 + DAY,
        "last_order_at": T0 + DAY,
        "order_times": [T0, T0 + DAY],
        "spend": {"EUR": "30.00"},
        "order_currencies": {"EUR": 2},
        "active_spans": [[T0, T0 + 91 * DAY]],
        "last_session_at": None,
        "last_activity_at": T0 + DAY,
        "first_seen_at": T0,
        "consent_status": None,
        "consent_at": None,
        "recent_event_ids": ["e1", "e2"],
        "recent_order_ids": ["o1", "o2"],
        "pending": [
            {
                "k": "session",
                "e": f"s{i}" + (WIDE if wide else ""),
                "c": cid,
                "t": T0 + 30 * DAY + i,
                "s": "sess" + (WIDE if wide else ""),
                "ch": "c" * 256,
            }
            for i in range(pending)
        ],
        "ladders": {"second_purchase": [T0, 1]},
        "stage": "repeat",
        "recent_firings": [],
        "fired_total": 1,
        "decision_counts": {"second_purchase/1/delivered": 1},
        "conversion_counts": {},
    }


def test_rows_of_the_previous_version_load_and_keep_their_meaning() -> None:
    engine = Engine(CoreSettings())
    state = CustomerState.from_dict(orjson.loads(orjson.dumps(old_row(3))))
    assert (state.orders, state.spend, state.version, state.stage) == (
        2,
        {"EUR": "30.00"},
        7,
        "repeat",
    )
    # Its dedup lists still work: event ids and order ids it had seen are duplicates.
    again = Event("purchase", "e1", "cus-old", T0, order_id="o1", amount="10", currency="EUR")
    assert engine.ingest(state, again, T0 + 2 * DAY) is None
    retry = Event("purchase", "e9", "cus-old", T0, order_id="o2", amount="10", currency="EUR")
    assert engine.ingest(state, retry, T0 + 2 * DAY) is None
    # Its raw pending events were compacted and still apply at their time.
    assert state.pending[0] == {"k": "session", "e": "s0", "t": T0 + 30 * DAY}
    engine.advance(state, T0 + 31 * DAY)
    assert state.last_session_at == T0 + 30 * DAY + 2 and state.pending == []
    # Written back in the new form, read again: equal.
    assert CustomerState.from_dict(orjson.loads(orjson.dumps(state.to_dict()))) == state
    assert "recent_event_ids" not in state.to_dict()


def test_an_old_row_over_budget_is_set_aside_until_its_pending_drains() -> None:
    engine = Engine(CoreSettings())
    raw = orjson.dumps(old_row(2048, wide=True))
    assert len(raw) > 1_000_000  # a row as the engine wrote it before the byte budget: 1.6 MB
    state = CustomerState.from_dict(orjson.loads(raw))
    assert row_size(state) > ROW_BUDGET // 2
    event = Event("session", "new", WIDE, T0 + 2 * DAY, session_id="x")
    refused = engine.ingest(state, event, T0 + 2 * DAY)
    assert isinstance(refused, Refused) and refused.code == CODE_CUSTOMER_OVER_BUDGET
    engine.advance(state, T0 + 31 * DAY)  # the clock passes its pending events
    assert state.pending == [] and row_size(state) <= ROW_BUDGET
    # The refused one was not remembered: sent again, it is taken in.
    assert engine.ingest(state, event, T0 + 31 * DAY) == []
    assert state.last_session_at == T0 + 30 * DAY + 2047
    later = Event("session", "newer", WIDE, T0 + 31 * DAY, session_id="x")
    assert engine.ingest(state, later, T0 + 31 * DAY) == []
    assert state.last_session_at == T0 + 31 * DAY


def test_a_row_that_remembers_128_firings_loads_and_keeps_what_the_guardrails_need() -> None:
    """The row format of ``recent_firings`` is unchanged: a row written when the record
    kept its newest 128 firings loads as it is, its delivered nudge still counts, and
    the next firing trims the list to what is still needed."""
    row = old_row(0)  # two orders, the last at T0 + 1 day: inactivity step 1 due at day 15
    delivered_at = T0 + 15 * DAY - HOUR
    # The delivered nudge first, then 127 suppressed firings: a 129th would have
    # pushed it out of the old record.
    row["recent_firings"] = [[delivered_at, "second_purchase", 3, T0, "delivered", None]] + [
        [delivered_at + i, "second_purchase", 3, T0 + i, "min_gap", None] for i in range(1, 128)
    ]
    engine = Engine(CoreSettings(holdout_percent=0.0))
    state = CustomerState.from_dict(orjson.loads(orjson.dumps(row)))
    assert len(state.recent_firings) == 128
    fired = [f for f in engine.advance(state, T0 + 16 * DAY) if isinstance(f, Firing)]
    assert [(f.rule, f.due_at, f.outcome) for f in fired] == [
        ("inactivity", T0 + 15 * DAY, "min_gap")
    ]
    assert len(state.recent_firings) == engine.memory.lookup + 1
    assert state.recent_firings[0].due_at == delivered_at


def test_a_row_written_by_the_version_before_the_budget_loads_and_carries_on() -> None:
    """data/row_before_budget.json was written by that version's own engine."""
    from pathlib import Path

    raw = (Path(__file__).parent / "data" / "row_before_budget.json").read_bytes()
    old = orjson.loads(raw)
    assert "recent_event_ids" in old and old["pending"][0]["c"] == "cus-pinned"
    state = CustomerState.from_dict(old)
    engine = Engine(CoreSettings(holdout_percent=0.0))
    facts = state.facts()
    # Its order days, not kept then, are rebuilt from its order times
    # (docs/prediction.md "State").
    assert "od" not in old and facts.pop("od")
    assert state.order_days == len({t // DAY for t in old["order_times"]}) > 1
    assert facts == {k: old[k] for k in facts}
    assert state.ladders.keys() == {k for k in old["ladders"]}
    # Its count of firings ever (no longer kept: nothing read it) is dropped on write.
    assert old["fired_total"] == 3 and "fired_total" not in state.to_dict()
    # Seen before: the same event id, and an old order under a new event id.
    t = 1767225600000000 + 80 * DAY
    assert engine.ingest(state, Event("session", "s1", "cus-pinned", t, session_id="x"), t) is None
    retry = Event("purchase", "new", "cus-pinned", t, order_id="ORD-3", amount="1", currency="EUR")
    assert engine.ingest(state, retry, t) is None
    # The waiting order (old wire form, with channel and customer id) applies at its time.
    assert state.pending[0] == {
        "k": "purchase",
        "e": "p9",
        "t": 1767225600000000 + 90 * DAY,
        "o": "ORD-9",
        "a": "99",
        "cur": "EUR",
    }
    engine.advance(state, 1767225600000000 + 95 * DAY)
    assert state.orders == 7 and state.spend["EUR"] == "136.50" and state.pending == []
    again = CustomerState.from_dict(orjson.loads(orjson.dumps(state.to_dict())))
    assert again == state


# --- the firings a record remembers (docs/guardrails.md "Guardrails") ----------------------


def test_no_remembered_firing_is_wider_than_the_budget_assumes() -> None:
    times = (-(2**62), 0, 2**62 - 1)
    for rule in ("second_purchase", "inactivity", "overdue"):
        for outcome in OUTCOMES:
            for step in (1, 10):
                for t in times:
                    state = CustomerState(customer_id="c")
                    state.recent_firings = [RecentFiring(t, rule, step, t, outcome, t)]
                    assert firings_size(state) - 2 + 1 <= MAX_FIRING_ENTRY_BYTES


def test_the_default_settings_remember_a_few_dozen_firings() -> None:
    # 32 for lookups, the cap of 4, and for attribution within 5 days: 3
    # second_purchase steps, 1 overdue, and for inactivity the most of k x 51 days
    # // step k (51 = 5 + 60 - 14; k = 1: 3) plus its 3 steps.
    assert firing_memory(CoreSettings()) == FiringMemory(lookup=32, guard=4, attribution=10)
    assert firing_memory(CoreSettings()).bytes <= FIRINGS_BUDGET // 10


def ten(unit: str) -> str:
    return ",".join(duration(k, unit) for k in range(1, 11))


def busy_case_of(steps: str, every: int, span: int, **raw: Any) -> BusyCase:
    """An order, then a session every ``every`` micros for ``span``: one busy customer."""
    given_raw = {"inactivity_steps": steps, "holdout_salt": "guard", **raw}
    cid = GUARD_CUSTOMERS[0]
    events = [purchase(cid, T0, "o0", event_id="p0")] + [
        session(cid, t, event_id=f"s{t}") for t in range(T0 + every, T0 + span + 1, every)
    ]
    return BusyCase(given_raw, build_config(given_raw).core, events, T0 + span)


class Unforgetting(Engine):
    """An engine that forgets nothing, and records the most firings a group of its
    memory (bounded by :func:`firing_memory`) would have held at once."""

    def __init__(self, core: CoreSettings) -> None:
        super().__init__(core)
        self.bound = self.memory
        self.memory = FiringMemory(10**9, 10**9, 10**9)
        self.most_open = 0
        self.most_sent = 0

    def _remember(
        self, state: CustomerState, due: Due, outcome: str, sent_at: int | None = None
    ) -> None:
        super()._remember(state, due, outcome, sent_at)
        now, core = due.due_at, self.settings
        self.most_open = max(
            self.most_open,
            sum(
                1
                for f in state.recent_firings
                if f.outcome in ATTRIBUTED
                and f.converted_at is None
                and f.due_at >= now - core.attribution_window
            ),
        )
        # Delivered nudges in one cap window: never more than the cap.
        self.most_sent = max(
            self.most_sent,
            sum(
                1
                for f in state.recent_firings
                if f.outcome == "delivered" and now - core.frequency_window < f.due_at <= now
            ),
        )


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(busy_cases())
@example(busy_case_of(ten("M"), 11 * MINUTE, DAY, holdout_percent=100, attribution_window="PT2H"))
def test_the_firing_memory_bound_holds_for_any_accepted_ladder(case: BusyCase) -> None:
    """Fed in time order, no customer ever needs more firings remembered than
    :func:`firing_memory` says (so none is dropped), and the row's firings stay in
    their byte budget after every event; the row read back decides the same."""
    unforgetting, engine = Unforgetting(case.core), Engine(case.core)
    assert firing_memory(case.core).fits  # the configuration accepted it
    states = {c: CustomerState(customer_id=c) for c in GUARD_CUSTOMERS}
    complete = {c: CustomerState(customer_id=c) for c in GUARD_CUSTOMERS}
    for e in case.events:
        engine.ingest(states[e.customer_id], e, e.occurred_at - 1)
        unforgetting.ingest(complete[e.customer_id], e, e.occurred_at - 1)
        state = states[e.customer_id]
        assert len(state.recent_firings) <= engine.memory.entries
        assert firings_size(state) <= FIRINGS_BUDGET
        # The processor writes the row and reads it back for the next event.
        states[e.customer_id] = CustomerState.from_dict(orjson.loads(orjson.dumps(state.to_dict())))
    if case.core.frequency_window > 0:
        assert unforgetting.most_sent <= case.core.frequency_cap
    assert unforgetting.most_open <= engine.memory.attribution
    for c in GUARD_CUSTOMERS:
        kept, every = states[c], complete[c]
        assert kept.decision_counts == every.decision_counts
        assert kept.conversion_counts == every.conversion_counts
