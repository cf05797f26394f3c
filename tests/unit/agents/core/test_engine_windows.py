"""Send windows in the engine (docs/send-windows.md "Deferred firings"): a firing due
outside its rule's window is dropped or kept until the window opens, then judged on
the facts at its send time; what a shop sees in the decisions it gets."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.core.emissions import Conversion, Emission, Firing
from agents.core.engine import Engine
from agents.core.rules import load_rules
from agents.core.rules.history import RuleHistory, Version, set_id
from agents.core.rules.model import RuleSet
from agents.core.settings import HOUR, CoreSettings
from agents.core.state import CustomerState
from agents.core.timeutil import to_micros
from agents.core.windows import SendWindowSetting, parse_send_window
from schemas.records import Event
from tests.unit.agents.factories import OPTED_OUT, consent, purchase, session

CID = "cus_windows"
BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"
HEAD = (
    'format = 1\n[guardrails]\nholdout_percent = 0\nmin_gap = "PT1H"\n'
    'frequency_cap = 50\nattribution_window = "P5D"\n'
)


def utc(day: int, hour: int, minute: int = 0, month: int = 1) -> int:
    """An instant of 2026 in UTC (2026-01-05 is a Monday)."""
    return to_micros(datetime(2026, month, day, hour, minute, tzinfo=UTC))


def rule(
    name: str = "nudge",
    steps: str = '"PT2H"',
    *,
    priority: int = 10,
    anchor: str = '"first_order"',
    extra: str = "",
) -> str:
    return (
        f'[[rule]]\nname = "{name}"\npriority = {priority}\nanchor = {anchor}\n'
        f"steps = [{steps}]\n{extra}\n"
    )


def window(
    open_: str = "09:00",
    close: str = "20:00",
    *,
    days: str = "all",
    policy: str = "defer",
    max_delay: str | None = None,
    zone: str | None = None,
    default_zone: str = "UTC",
) -> SendWindowSetting:
    raw: dict[str, object] = {
        "windows": [{"days": days, "open": open_, "close": close}],
        "policy": policy,
    }
    if max_delay is not None:
        raw["max_delay"] = max_delay
    setting, problems = parse_send_window(raw)
    assert setting is not None, problems
    return replace(setting, zone=zone, default_zone=default_zone)


def ruleset(*parts: str, windows: dict[str, SendWindowSetting], head: str = HEAD) -> RuleSet:
    """The rules of ``parts``, those named in ``windows`` with that send window (as
    the rules file will give them: docs/send-windows.md "Deferred firings")."""
    rs = load_rules(head + "".join(parts))
    rules = tuple(
        replace(r, send_window=windows[r.name]) if r.name in windows else r for r in rs.rules
    )
    return RuleSet(rules, rs.guardrails, rs.lifecycle, rs.format)


def engine(*parts: str, windows: dict[str, SendWindowSetting], head: str = HEAD) -> Engine:
    return Engine(CoreSettings(rules=ruleset(*parts, windows=windows, head=head)))


def order(t: int, zone: str | None = BERLIN) -> Event:
    return replace(purchase(CID, t), timezone=zone)


def visit(t: int, zone: str | None = None) -> Event:
    return replace(session(CID, t), timezone=zone)


def run(
    eng: Engine,
    events: list[Event],
    until: int,
    state: CustomerState | None = None,
) -> list[Emission]:
    """Events taken in as the clock reaches them, then the clock to ``until``."""
    state = state if state is not None else CustomerState(customer_id=CID, partition=0)
    out: list[Emission] = []
    for e in sorted(events, key=lambda e: (e.occurred_at, e.event_id)):
        got = eng.ingest(state, e, e.occurred_at - 1)
        assert isinstance(got, list)
        out += got
    return out + eng.advance(state, until)


Seen = tuple[str, int, int, str, int | None, str | None]


def seen(out: list[Emission]) -> list[Seen]:
    """Each decision as (rule, step, due_at, outcome, send_at, zone)."""
    return [
        (f.rule, f.step, f.due_at, f.outcome, f.send_at, f.zone)
        for f in out
        if isinstance(f, Firing)
    ]


# Monday 2026-01-05, 21:00 in Berlin (CET, UTC+1): the first order; the nudge is
# due two hours later, 23:00 local, outside 09:00-20:00.
FIRST = utc(5, 20)
DUE = utc(5, 22)
NINE_BERLIN = utc(6, 8)  # Tuesday 09:00 CET


def test_a_nudge_due_at_night_is_sent_at_nine_the_next_morning_in_berlin() -> None:
    eng = engine(rule(), windows={"nudge": window()})
    state = CustomerState(customer_id=CID, partition=0)
    assert run(eng, [order(FIRST)], NINE_BERLIN - 1, state) == []
    # Kept in the row, waiting; the clock is woken for it.
    assert state.to_dict()["df"] == [
        ["nudge", 1, FIRST, DUE, NINE_BERLIN, 2 * HOUR, eng.rules[0].version, BERLIN]
    ]
    assert eng.wake_at(state) == NINE_BERLIN
    got = eng.advance(state, NINE_BERLIN)
    assert seen(got) == [("nudge", 1, DUE, "delivered", NINE_BERLIN, BERLIN)]
    assert "df" not in state.to_dict()


def test_the_row_counts_deferrals_and_local_send_hours_for_the_reports() -> None:
    # One nudge waited and went out at 09:00 Berlin, one was inside and went out at
    # 10:00 local; a third waited and was cancelled: reports read these counts
    # (docs/send-windows.md "Outputs").
    eng = engine(
        rule(),
        rule("later", '"PT14H"', priority=20),
        rule("calm", extra='cancel_on = ["session"]', priority=30),
        windows={"nudge": window(), "later": window(), "calm": window()},
    )
    state = CustomerState(customer_id=CID, partition=0)
    out = run(eng, [order(FIRST), visit(utc(6, 7))], utc(7, 0), state)
    assert sorted((r, o) for r, _, _, o, _, _ in seen(out)) == [
        ("calm", "cancelled"),
        ("later", "delivered"),
        ("nudge", "delivered"),
    ]
    hours = {
        rule: [h for h, n in enumerate(row[1:]) if n] for rule, row in state.send_counts.items()
    }
    waited = {rule: row[0] for rule, row in state.send_counts.items()}
    assert waited == {"nudge": 1, "later": 0, "calm": 1}
    assert hours == {"nudge": [9], "later": [11], "calm": []}
    # Kept in the row across a restart.
    assert CustomerState.from_dict(state.to_dict()).send_counts == state.send_counts


def test_inside_the_window_it_is_sent_at_its_due_time_and_says_so() -> None:
    eng = engine(rule(steps='"PT14H"'), windows={"nudge": window()})
    assert seen(run(eng, [order(FIRST)], utc(7, 0))) == [
        ("nudge", 1, utc(6, 10), "delivered", utc(6, 10), BERLIN)
    ]


def test_without_a_window_nothing_changes_and_no_send_time_is_carried() -> None:
    plain = engine(rule(), windows={})
    out = run(plain, [order(FIRST)], utc(7, 0))
    assert seen(out) == [("nudge", 1, DUE, "delivered", None, None)]


def test_an_order_between_due_and_send_time_cancels_the_nudge() -> None:
    eng = engine(rule(extra='cancel_on = ["purchase"]'), windows={"nudge": window()})
    out = run(eng, [order(FIRST), order(utc(6, 7))], utc(7, 0))
    assert seen(out) == [("nudge", 1, DUE, "cancelled", NINE_BERLIN, BERLIN)]
    assert not any(isinstance(e, Conversion) for e in out)


def test_an_audience_no_longer_met_at_the_send_time_cancels_the_nudge() -> None:
    eng = engine(rule(extra="audience = { orders = { max = 1 } }"), windows={"nudge": window()})
    out = run(eng, [order(FIRST), order(utc(6, 7))], utc(7, 0))
    assert seen(out) == [("nudge", 1, DUE, "cancelled", NINE_BERLIN, BERLIN)]


def test_consent_is_read_at_the_send_time() -> None:
    eng = engine(rule(), windows={"nudge": window()})
    opt_out = replace(consent(CID, utc(6, 1), OPTED_OUT), timezone=None)
    out = run(eng, [order(FIRST), opt_out], utc(7, 0))
    assert seen(out) == [("nudge", 1, DUE, "opted_out", NINE_BERLIN, BERLIN)]


def test_a_rules_file_with_a_default_timezone_and_a_file_window_defers() -> None:
    text = (
        HEAD.replace("format = 1\n", 'format = 1\ndefault_timezone = "Europe/Berlin"\n', 1)
        + '[send_window]\nwindows = [ { days = "all", open = "09:00", close = "20:00" } ]\n'
        + rule()
    )
    eng = Engine(CoreSettings(rules=load_rules(text)))
    # No zone on the customer's events: the file's default zone.
    assert seen(run(eng, [order(FIRST, zone=None)], utc(7, 0))) == [
        ("nudge", 1, DUE, "delivered", NINE_BERLIN, BERLIN)
    ]


def test_the_next_step_due_while_one_waits_supersedes_it() -> None:
    eng = engine(rule(steps='"PT2H", "PT4H"'), windows={"nudge": window()})
    out = run(eng, [order(FIRST)], utc(7, 0))
    assert seen(out) == [
        ("nudge", 1, DUE, "superseded", NINE_BERLIN, BERLIN),
        ("nudge", 2, utc(6, 0), "delivered", NINE_BERLIN, BERLIN),
    ]


def test_the_gap_counts_from_the_send_time_of_a_deferred_nudge() -> None:
    head = HEAD.replace('min_gap = "PT1H"', 'min_gap = "PT4H"')
    # "later" has no window: due at 11:00 CET, two hours after "nudge" was sent,
    # twelve after it was due.
    eng = engine(
        rule(), rule("later", '"PT15H"', priority=20), windows={"nudge": window()}, head=head
    )
    assert seen(run(eng, [order(FIRST)], utc(7, 0))) == [
        ("nudge", 1, DUE, "delivered", NINE_BERLIN, BERLIN),
        ("later", 1, utc(6, 11), "min_gap", None, None),
    ]


def test_firings_piling_onto_one_opening_go_by_priority_and_arbitration_outranks() -> None:
    # "low" falls due first (22:00 CET) but has the lower priority.
    eng = engine(
        rule("high", '"PT3H"', priority=10),
        rule("low", '"PT1H"', priority=20, extra="arbitration = true"),
        windows={"high": window(), "low": window()},
    )
    assert seen(run(eng, [order(FIRST)], utc(7, 0))) == [
        ("high", 1, utc(5, 23), "delivered", NINE_BERLIN, BERLIN),
        ("low", 1, utc(5, 21), "outranked", NINE_BERLIN, BERLIN),
    ]


def test_policy_drop_decides_outside_window_at_the_due_time_for_everyone() -> None:
    held = HEAD.replace("holdout_percent = 0", "holdout_percent = 100")
    for head in (HEAD, held):
        eng = engine(rule(), windows={"nudge": window(policy="drop")}, head=head)
        state = CustomerState(customer_id=CID, partition=0)
        out = run(eng, [order(FIRST)], DUE, state)
        assert seen(out) == [("nudge", 1, DUE, "outside_window", None, BERLIN)]
        assert "df" not in state.to_dict() and state.recent_firings == []


def test_max_delay_drops_a_firing_whose_window_opens_too_late() -> None:
    short = engine(rule(), windows={"nudge": window(max_delay="PT9H")})
    assert seen(run(short, [order(FIRST)], utc(7, 0))) == [
        ("nudge", 1, DUE, "outside_window", None, BERLIN)
    ]
    enough = engine(rule(), windows={"nudge": window(max_delay="PT10H")})
    assert seen(run(enough, [order(FIRST)], utc(7, 0))) == [
        ("nudge", 1, DUE, "delivered", NINE_BERLIN, BERLIN)
    ]


def test_a_fixed_zone_wins_over_the_customers_own() -> None:
    # Due 13:00 UTC: 14:00 in Berlin (inside) but 08:00 in New York (outside).
    eng = engine(rule(steps='"PT17H"'), windows={"nudge": window(zone=NEW_YORK)})
    assert seen(run(eng, [order(FIRST)], utc(7, 0))) == [
        ("nudge", 1, utc(6, 13), "delivered", utc(6, 14), NEW_YORK)
    ]


def test_a_customer_without_a_zone_gets_the_files_default_zone() -> None:
    eng = engine(rule(), windows={"nudge": window(default_zone="Asia/Tokyo")})
    # 22:00 UTC is 07:00 in Tokyo: sent at 09:00 JST, 00:00 UTC.
    assert seen(run(eng, [order(FIRST, zone=None)], utc(7, 0))) == [
        ("nudge", 1, DUE, "delivered", utc(6, 0), "Asia/Tokyo")
    ]


def test_a_customer_moving_zone_after_the_due_time_keeps_the_send_time() -> None:
    eng = engine(rule(), windows={"nudge": window()})
    out = run(eng, [order(FIRST), visit(utc(6, 1), NEW_YORK)], utc(7, 0))
    assert seen(out) == [("nudge", 1, DUE, "delivered", NINE_BERLIN, BERLIN)]


def test_conversions_count_from_the_send_time() -> None:
    eng = engine(rule(), windows={"nudge": window()})
    # An order between due and send time converts nothing; one an hour after
    # the send converts it, one hour to convert.
    out = run(eng, [order(FIRST), order(utc(6, 2)), order(utc(6, 9))], utc(7, 0))
    conversions = [e for e in out if isinstance(e, Conversion)]
    assert [(c.converted_at, c.send_at, c.hours_to_convert) for c in conversions] == [
        (utc(6, 9), NINE_BERLIN, 1.0)
    ]


def test_a_deferral_across_berlins_spring_gap_opens_at_three_cest() -> None:
    eng = engine(rule(), windows={"nudge": window("02:30", "06:00")})
    # Saturday 2026-03-28, 21:00 UTC (22:00 CET) the order; due 23:00 UTC. 02:30 on
    # the 29th does not exist: the window opens at 03:00 CEST, 01:00 UTC.
    first = utc(28, 21, month=3)
    assert seen(run(eng, [order(first)], utc(30, 0, month=3))) == [
        ("nudge", 1, utc(28, 23, month=3), "delivered", utc(29, 1, month=3), BERLIN)
    ]


# --- rules changes ---------------------------------------------------------------------


def switching(on_change: str, at: int) -> Engine:
    steps = '"PT2H", "P20D"'
    extra = f'on_change = "{on_change}"'
    seed = ruleset(rule(steps=steps, extra=extra), windows={"nudge": window()})
    new = ruleset(
        rule(steps=steps, extra=extra + '\nreason = "changed {span}"'), windows={"nudge": window()}
    )
    history = RuleHistory.seed(seed).add(Version(set_id(new), new, "", at, at))
    return Engine(CoreSettings(rules=seed)).with_history(history)


def test_a_restart_switch_supersedes_a_waiting_nudge_and_a_pin_keeps_it() -> None:
    ti = utc(6, 3)
    restarted = seen(run(switching("restart", ti), [order(FIRST)], utc(7, 0)))
    assert restarted == [("nudge", 1, DUE, "superseded", NINE_BERLIN, BERLIN)]
    pinned = seen(run(switching("pin", ti), [order(FIRST)], utc(7, 0)))
    assert pinned == [("nudge", 1, DUE, "delivered", NINE_BERLIN, BERLIN)]


# --- determinism -----------------------------------------------------------------------


def test_a_row_written_mid_deferral_gives_the_same_decisions_after_a_restart() -> None:
    eng = engine(
        rule(steps='"PT2H", "PT30H"'),
        rule("other", '"PT1H"', priority=20, extra="arbitration = true"),
        windows={"nudge": window(), "other": window("10:00", "12:00")},
    )
    events = [order(FIRST), visit(utc(6, 2), NEW_YORK)]
    whole = run(eng, events, utc(9, 0))
    state = CustomerState(customer_id=CID, partition=0)
    first = run(eng, events, utc(6, 3), state)
    assert "df" in state.to_dict()
    reloaded = CustomerState.from_dict(orjson.loads(orjson.dumps(state.to_dict())))
    assert reloaded.to_dict() == state.to_dict()
    assert seen(first + eng.advance(reloaded, utc(9, 0))) == seen(whole)


def test_rows_without_windows_read_and_write_as_before() -> None:
    eng = engine(rule(steps='"PT2H", "PT4H"'), windows={})
    state = CustomerState(customer_id=CID, partition=0)
    run(eng, [order(FIRST)], utc(7, 0), state)
    row = state.to_dict()
    assert "df" not in row and all(len(f) == 6 for f in row["recent_firings"])
    assert CustomerState.from_dict(row).to_dict() == row


ZONES = (BERLIN, NEW_YORK, "Asia/Kathmandu", "Australia/Lord_Howe", None)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Engine, list[Event], list[int]]:
    head = HEAD.replace('min_gap = "PT1H"', f'min_gap = "PT{draw(st.integers(0, 12))}H"')
    parts = [
        rule("a", '"PT2H", "PT9H", "PT20H"', extra='cancel_on = ["purchase"]'),
        rule("b", '"PT5H"', priority=20, anchor='"last_activity"', extra="arbitration = true"),
        rule("c", '"PT7H", "PT30H"', priority=30, extra="arbitration = true"),
    ]
    kinds = st.sampled_from(["defer", "drop", "delay"])
    windows = {}
    for name in "abc":
        if draw(st.booleans()):
            kind = draw(kinds)
            o, c = draw(
                st.sampled_from([("09:00", "20:00"), ("22:00", "02:00"), ("07:30", "08:00")])
            )
            windows[name] = window(
                o,
                c,
                days=draw(st.sampled_from(["all", "weekdays"])),
                policy="drop" if kind == "drop" else "defer",
                max_delay="PT10H" if kind == "delay" else None,
                zone=draw(st.sampled_from([None, "Asia/Tokyo"])),
                default_zone=draw(st.sampled_from(["UTC", NEW_YORK])),
            )
    eng = engine(*parts, windows=windows, head=head)
    start = utc(5, 0)
    # Sometimes a rules change: rule "a" reworded (restarted or pinned), "c" removed.
    change = draw(st.sampled_from([None, "restart", "pin"]))
    if change is not None:
        line = f'on_change = "{change}"\n'
        seed = ruleset(*(p + line for p in parts), windows=windows, head=head)
        reworded = parts[0] + line + 'reason = "again {span}"\n'
        new = ruleset(reworded, parts[1] + line, windows=windows, head=head)
        at = start + draw(st.integers(0, 96)) * HOUR
        history = RuleHistory.seed(seed).add(Version(set_id(new), new, "", at, at))
        eng = Engine(CoreSettings(rules=seed)).with_history(history)
    hours = draw(st.lists(st.integers(0, 96), min_size=1, max_size=6))
    events: list[Event] = []
    for h in hours:
        zone = draw(st.sampled_from(ZONES))
        make = order if draw(st.booleans()) else visit
        events.append(make(start + h * HOUR + draw(st.integers(0, 59)) * 60_000_000, zone))
    steps = draw(st.lists(st.integers(1, 40), min_size=1, max_size=12))
    return eng, events, [s * HOUR for s in steps]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_one_jump_or_many_small_steps_give_the_same_decisions_and_rows(
    case: tuple[Engine, list[Event], list[int]],
) -> None:
    eng, events, steps = case
    start, end = utc(5, 0), utc(12, 0)

    def taken_in() -> CustomerState:
        # Every event waits for the clock (dated after it), so the walk decides.
        state = CustomerState(customer_id=CID, partition=0)
        for e in events:
            assert eng.ingest(state, e, start - 1) == []
        return state

    jump_state = taken_in()
    jump = eng.advance(jump_state, end)
    walk_state = taken_in()
    walk: list[Emission] = []
    clock, i = start, 0
    while clock < end:
        walk += eng.advance(walk_state, clock)
        # A row round-trip between steps: a restart mid-deferral changes nothing.
        walk_state = CustomerState.from_dict(orjson.loads(orjson.dumps(walk_state.to_dict())))
        clock += steps[i % len(steps)]
        i += 1
    walk += eng.advance(walk_state, end)
    assert walk == jump
    assert walk_state.to_dict() == jump_state.to_dict()
