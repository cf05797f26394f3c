"""The engine and the offline reference agree with send windows (docs/send-windows.md,
issue 22).

Random histories of test_reference_vs_engine.py (purchases, twins, retries,
redeliveries, sessions, consents) whose events carry zones drawn from 20 zones
(DST ones among them: the month from 2026-03-02 holds New York's and Berlin's spring
changes), an unknown zone and none; random rules files of three rules whose windows
are their own, the file's ``[send_window]`` or ``"none"``, with ``defer`` / ``drop``
/ ``max_delay``, a fixed zone or the customer's, a ``default_timezone``, arbitration,
cancels, holdout, min_gap and cap; and the same with rules changes.  Both sides run
the same lines: the reference from the file's text with its own reading, the engine
with the same file's rules (its windows read by the core's check).  Decisions (in
each customer's emission order, with send_at and zone), conversions (with send_at),
report rows and the firings still deferred at the end must be identical.
"""

from __future__ import annotations

import dataclasses
import tomllib
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, Phase, example, find, given, settings
from hypothesis import strategies as st

from agents.core.emissions import Conversion, Firing
from agents.core.engine import Engine
from agents.core.ids import trigger_id
from agents.core.reports import CustomerRow
from agents.core.rules import RulesError, load_rules
from agents.core.rules.history import RuleHistory, Version, set_id
from agents.core.rules.model import RuleSet
from agents.core.settings import DAY, HOUR, CoreSettings
from agents.core.state import CustomerState
from agents.core.timeutil import iso, parse_timestamp, to_micros
from agents.core.windows import parse_send_window
from agents.offline.reference import ReferenceResult, compute_decisions
from tests.unit.offline import test_reference_vs_engine as parity
from tests.unit.offline.strategies import EVENT_ZONES, ZONES, rules_documents, to_toml, window_table

LIFECYCLE = {"at_risk_after": "P3D", "lapsed_after": "P8D", "priority": 15}
LADDERS = (["P1D", "P2D", "P4D"], ["PT12H", "P1D", "P3D"], ["P1D", "P3D"], ["PT12H", "P5D"])
TEMPLATES: dict[str, dict[str, Any]] = {
    "alpha": {"anchor": "first_order", "cancel_on": [["purchase"], [], ["session"]]},
    "beta": {"anchor": "last_activity", "cancel_on": [[]]},
    "gamma": {"anchor": {"kind": "last_order", "min_orders": 1}, "cancel_on": [[], ["session"]]},
}
PRIORITIES = {"alpha": (10, 31), "beta": (20, 11), "gamma": (30, 21)}


@st.composite
def rules_file(draw: st.DrawFn) -> str:
    doc: dict[str, Any] = {"format": 1}
    if draw(st.booleans()):
        doc["default_timezone"] = draw(st.sampled_from(ZONES))
    doc["guardrails"] = {
        "holdout_percent": draw(st.sampled_from([0.0, 50.0])),
        "holdout_salt": parity.SALT,
        "min_gap": draw(st.sampled_from(["PT12H", "PT24H", "PT1H"])),
        "frequency_cap": draw(st.sampled_from([2, 4])),
        "frequency_window": "P10D",
        "attribution_window": "P2D",
        "arbitration": draw(st.booleans()),
    }
    doc["lifecycle"] = LIFECYCLE
    if draw(st.booleans()):
        doc["send_window"] = draw(window_table())
    rules = []
    used: set[int] = set()
    for name, template in TEMPLATES.items():
        if not draw(st.integers(0, 4)):
            continue
        priority = draw(st.sampled_from([p for p in PRIORITIES[name] if p not in used]))
        used.add(priority)
        rule: dict[str, Any] = {
            "name": name,
            "priority": priority,
            "anchor": template["anchor"],
            "steps": draw(st.sampled_from(LADDERS)),
            "on_change": draw(st.sampled_from(["pin", "restart"])),
        }
        cancel = draw(st.sampled_from(template["cancel_on"]))
        if cancel:
            rule["cancel_on"] = cancel
        own = draw(st.integers(0, 3))
        if own == 1:
            rule["send_window"] = draw(window_table())
        elif own == 2:
            rule["send_window"] = "none"
        if draw(st.integers(0, 5)) == 0:
            rule["audience"] = {"orders": {"max": 2}}
        if draw(st.integers(0, 6)) == 0:
            rule["transactional"] = True
        rules.append(rule)
    doc["rule"] = rules
    return to_toml(doc)


# parity's events, denser: up to 40 over the first ten days (so that orders and
# sessions often fall between a due time and its send time).
histories = st.lists(
    st.tuples(
        st.sampled_from(parity.KINDS),
        st.integers(0, len(parity.CUSTOMERS) - 1),
        st.integers(0, 20),
        st.integers(0, 11),
    ),
    min_size=1,
    max_size=40,
).map(parity._build)


@st.composite
def zoned_histories(draw: st.DrawFn) -> list[bytes]:
    """parity's histories, each event with a zone (or none), some moved off the
    half-day grid by whole hours so that events fall between a due time and the
    send time it waits for."""
    lines = draw(histories)
    zones = draw(st.lists(st.sampled_from(EVENT_ZONES), min_size=1, max_size=8))
    shifts = draw(st.lists(st.sampled_from([0, 0, 0, 1, 3, 6, 9, 11]), min_size=1, max_size=8))
    out = []
    for i, line in enumerate(lines):
        event = orjson.loads(line)
        zone = zones[i % len(zones)]
        if zone is not None:
            event["timezone"] = zone
        shift = shifts[i % len(shifts)] * HOUR
        if shift:
            event["occurred_at"] = iso(to_micros(parse_timestamp(event["occurred_at"])) + shift)
        out.append(orjson.dumps(event))
    return out


# --- the engine's rules: the same file, windows read by the core's own check ------------


def engine_rules(text: str) -> RuleSet:
    """The engine's rule set of ``text``.  Read whole when the rules check reads
    windows; else without its window keys, each rule's effective window put in as
    the core's check reads the table (docs/send-windows.md "Model")."""
    doc = tomllib.loads(text)
    try:
        whole = load_rules(text)
    except RulesError:
        whole = None
    default_zone = doc.pop("default_timezone", "UTC")
    file_window = doc.pop("send_window", None)
    effective: dict[str, Any] = {}
    for rule in doc.get("rule", []):
        own = rule.pop("send_window", file_window)
        effective[rule["name"]] = None if own == "none" else own
    rules = load_rules(to_toml(doc))
    made = []
    for rule in rules.rules:
        table = effective[rule.name]
        if table is not None:
            plain = {k: v for k, v in table.items() if k != "zone"}
            setting, problems = parse_send_window(plain)
            assert setting is not None, problems
            setting = dataclasses.replace(
                setting, zone=table.get("zone"), default_zone=default_zone
            )
            rule = dataclasses.replace(rule, send_window=setting)
        made.append(rule)
    injected = dataclasses.replace(rules, rules=tuple(made))
    if whole is not None:
        assert whole.versions() == injected.versions()
    return injected


# --- the two sides ---------------------------------------------------------------------

# trigger_id, outcome, due_at, rule_version, holdout, send_at, zone
Decision = tuple[str, str, str, str, bool, str | None, str | None]
Outcome = tuple[str, str, str, str, str | None]  # trigger_id, group, converted_at, order, send_at
Waiting = tuple[str, str]  # trigger_id, send_at


@dataclasses.dataclass
class Side:
    decisions: dict[str, list[Decision]]
    conversions: list[Outcome]
    rows: dict[str, CustomerRow]
    waiting: list[Waiting]


def _iso(t: int | None) -> str | None:
    return None if t is None else iso(t)


def engine_side(
    seed: str,
    changes: list[tuple[int, str]],
    lines: list[bytes],
    until: int,
    backfill: int | None = None,
    round_trip: bool = False,
) -> Side:
    seed_rules = engine_rules(seed)
    engine = Engine(CoreSettings(rules=seed_rules, backfill_until=backfill))
    if changes:
        versions = [Version(set_id(seed_rules), seed_rules, seed)]
        for t, text in changes:
            rules = engine_rules(text)
            versions.append(Version(set_id(rules), rules, text, effective_at=t, applied_at=t))
        engine = engine.with_history(RuleHistory(tuple(versions)))
    watermark = parity.live(until)
    per_customer: dict[str, list[Any]] = {}
    for line in lines:
        e = parity._validate(line)
        per_customer.setdefault(e.customer_id, []).append(e)
    side = Side({}, [], {}, [])
    for cid, events in per_customer.items():
        state = CustomerState(customer_id=cid, partition=0)
        emitted = []
        for e in events:
            emitted += engine.ingest(state, e, watermark(e)) or []
            if round_trip:
                # What a restarted worker reads back (kept firings in "df").
                state = CustomerState.from_dict(orjson.loads(orjson.dumps(state.to_dict())))
        emitted += engine.advance(state, until)
        for x in emitted:
            if isinstance(x, Firing) and not x.backfill:
                side.decisions.setdefault(cid, []).append(
                    (
                        x.trigger_id,
                        x.outcome,
                        iso(x.due_at),
                        x.rule_version or "",
                        x.holdout,
                        _iso(x.send_at),
                        x.zone,
                    )
                )
            elif isinstance(x, Conversion):
                side.conversions.append(
                    (x.trigger_id, x.group, iso(x.converted_at), x.order_id, _iso(x.send_at))
                )
        side.rows[cid] = CustomerRow.from_state(state)
        side.waiting += [
            (trigger_id(cid, d.rule, d.step, d.anchor_at), iso(d.send_at))
            for d in state.deferred
            if d.send_at > until
        ]
    side.conversions.sort()
    side.waiting.sort()
    return side


def reference_side(
    seed: str, changes: list[tuple[int, str]], lines: list[bytes], until: int
) -> Side:
    return _reference(seed, changes, lines, until)[0]


def _reference(
    seed: str,
    changes: list[tuple[int, str]],
    lines: list[bytes],
    until: int,
    backfill: int | None = None,
) -> tuple[Side, ReferenceResult]:
    result = compute_decisions(
        lines,
        CoreSettings(backfill_until=backfill),
        rules=seed,
        until=until,
        now=parity.NOW,
        changes=changes,
    )
    side = Side({}, [], {r.customer_id: r for r in result.rows}, [])
    for d in result.decisions:
        side.decisions.setdefault(d["customer_id"], []).append(
            (
                d["trigger_id"],
                d["outcome"],
                d["due_at"],
                d["rule_version"],
                d["holdout"],
                d.get("send_at"),
                d.get("send_zone"),
            )
        )
    side.conversions = sorted(
        (c.trigger_id, c.group, iso(c.converted_at), c.order_id, _iso(c.send_at))
        for c in result.conversions
    )
    side.waiting = sorted(
        (trigger_id(f.customer_id, f.rule, f.step, f.anchor), iso(f.send_at or 0))
        for f in result.undecided
    )
    return side, result


def both(
    seed: str,
    changes: list[tuple[int, str]],
    lines: list[bytes],
    until: int,
    *,
    backfill: int | None = None,
) -> Side:
    """Engine and reference agree."""
    timed = parity.by_time(lines)
    # Every other history reads each customer's row back after each event.
    engine = engine_side(seed, changes, timed, until, backfill, round_trip=len(lines) % 2 == 0)
    reference, _ = _reference(seed, changes, timed, until, backfill)
    assert engine.decisions == reference.decisions
    assert engine.conversions == reference.conversions
    assert engine.waiting == reference.waiting
    assert engine.rows.keys() == reference.rows.keys()
    for cid, row in reference.rows.items():
        for f in dataclasses.fields(CustomerRow):
            assert getattr(engine.rows[cid], f.name) == getattr(row, f.name), (cid, f.name)
    return reference


# Changes on the half-day grid, sometimes a quarter-day off it.
change_times = st.lists(
    st.tuples(st.integers(1, parity.SLOTS + 4), st.sampled_from([0, 0, 6 * HOUR])),
    min_size=1,
    max_size=2,
    unique_by=lambda x: x[0],
).map(lambda xs: sorted(parity.T0 + s * 12 * HOUR + off for s, off in xs))

horizons = st.integers(0, 40).map(parity.horizon)


# --- hand-picked -----------------------------------------------------------------------

A = parity.CUSTOMERS[0]
T0 = parity.T0  # Monday 2026-03-02 10:00 UTC


def _file(window: dict[str, Any] | None, *rules: dict[str, Any], **top: Any) -> str:
    doc: dict[str, Any] = {
        "format": 1,
        **top,
        "guardrails": {"holdout_percent": 0.0, "min_gap": "PT12H", "attribution_window": "P2D"},
        "lifecycle": LIFECYCLE,
    }
    if window is not None:
        doc["send_window"] = window
    doc["rule"] = list(rules)
    return to_toml(doc)


BERLIN_MORNING = {"windows": [{"days": "all", "open": "09:00", "close": "12:00"}]}
ALPHA = {"name": "alpha", "priority": 10, "anchor": "first_order", "steps": ["PT12H", "P2D"]}


def berlin(line: bytes) -> bytes:
    return orjson.dumps(orjson.loads(line) | {"timezone": "Europe/Berlin"})


def test_a_firing_due_at_night_is_sent_at_the_next_local_opening_in_both() -> None:
    """alpha step 1 is due at 22:00 UTC (23:00 in Berlin): sent at 09:00 Berlin the
    next morning, 08:00 UTC; an order two hours later converts from the send time."""
    text = _file(BERLIN_MORNING, ALPHA)
    lines = [
        berlin(parity.purchase(A, T0, "o1", "p1")),
        berlin(parity.purchase(A, T0 + 24 * HOUR, "o2", "p2")),
    ]
    ref = both(text, [], lines, T0 + 3 * DAY)
    assert [(d[1], d[5], d[6]) for d in ref.decisions[A]] == [
        ("delivered", "2026-03-03T08:00:00Z", "Europe/Berlin"),
        # Step 2 (two days) is due at 11:00 in Berlin, inside: sent at its due time.
        ("delivered", "2026-03-04T10:00:00Z", "Europe/Berlin"),
    ]
    # From the send time: 2 hours, not 12 from the due time.
    assert ref.conversions[0][4] == "2026-03-03T08:00:00Z"


def test_an_order_before_the_send_time_cancels_the_deferred_nudge_in_both() -> None:
    text = _file(BERLIN_MORNING, {**ALPHA, "cancel_on": ["purchase"], "steps": ["PT12H", "P5D"]})
    lines = [
        berlin(parity.purchase(A, T0, "o1", "p1")),
        berlin(parity.purchase(A, T0 + 20 * HOUR, "o2", "p2")),  # 06:00 UTC, before 08:00
    ]
    ref = both(text, [], lines, T0 + 3 * DAY)
    assert [(d[1], d[5]) for d in ref.decisions[A]] == [("cancelled", "2026-03-03T08:00:00Z")]
    assert ref.conversions == []


def test_the_next_step_due_before_the_send_time_supersedes_it_in_both() -> None:
    """Step 1 due at 22:00 UTC waits for 08:00 UTC (09:00 Berlin); step 2 falls due
    at 04:00 UTC, before that: step 1 is superseded then (its send time on the
    record), and step 2 waits for the same opening."""
    text = _file(BERLIN_MORNING, {**ALPHA, "steps": ["PT12H", "PT18H"]})
    lines = [berlin(parity.purchase(A, T0, "o1", "p1"))]
    ref = both(text, [], lines, T0 + 3 * DAY)
    assert [(d[1], d[2], d[5]) for d in ref.decisions[A]] == [
        ("superseded", "2026-03-02T22:00:00Z", "2026-03-03T08:00:00Z"),
        ("delivered", "2026-03-03T04:00:00Z", "2026-03-03T08:00:00Z"),
    ]


def test_a_drop_window_and_a_fixed_zone_and_none_in_both() -> None:
    drop = {"windows": [{"days": "all", "open": "09:00", "close": "12:00"}], "policy": "drop"}
    fixed = {**BERLIN_MORNING, "zone": "Asia/Tokyo"}
    text = _file(
        drop,
        {**ALPHA, "steps": ["PT12H"]},
        {
            "name": "beta",
            "priority": 20,
            "anchor": "last_activity",
            "steps": ["PT12H"],
            "send_window": fixed,
        },
        {
            "name": "gamma",
            "priority": 30,
            "anchor": "last_order",
            "steps": ["PT12H"],
            "send_window": "none",
        },
        default_timezone="America/New_York",
    )
    lines = [parity.purchase(A, T0, "o1", "p1")]
    ref = both(text, [], lines, T0 + 3 * DAY)
    got = [(d[1], d[5], d[6]) for d in ref.decisions[A]]
    # All three due at 22:00 UTC.  alpha: 17:00 in New York (the default zone: the
    # customer has none), dropped; gamma: no window, delivered at 22:00; beta: 07:00
    # in Tokyo (its fixed zone), sent at 09:00 Tokyo (00:00 UTC), two hours after
    # gamma's nudge: min_gap counts send times.
    assert got == [
        ("outside_window", None, "America/New_York"),
        ("delivered", None, None),
        ("min_gap", "2026-03-03T00:00:00Z", "Asia/Tokyo"),
    ]


# The one difference found: a deferred firing and its own rule's next step judged at
# one send time.  beta (arbitration on; window weekdays 09:00-20:00 in New York): the
# order on Saturday 2026-03-07 13:00 UTC makes step 1 due Sunday 08:00 EDT, deferred
# to Monday 09:00 EDT (13:00 UTC), when step 2 falls due inside the window.  Step 1
# is delivered; step 2 has no rule with a lower priority number at that instant, so
# it is not outranked (docs/guardrails.md "Guardrails": outranked needs a firing
# with a lower priority number) but meets min_gap, as the reference says.  The
# engine marks it outranked: its walk remembers only that some non-transactional
# firing was judged at the instant (``busy_at`` in Engine.advance), not whose.
SAME_RULE = _file(
    {
        "windows": [{"days": "weekdays", "open": "09:00", "close": "20:00"}],
        "zone": "America/New_York",
    },
    {"name": "beta", "priority": 20, "anchor": "last_activity", "steps": ["P1D", "P2D"]},
)
SAME_RULE_LINES = [parity.purchase(A, T0 + 5 * DAY + 3 * HOUR, "o1", "p1")]


def _arbitrating(text: str) -> str:
    return text.replace(
        'attribution_window = "P2D"', 'attribution_window = "P2D"\narbitration = true'
    )


def test_a_deferred_firing_does_not_outrank_its_own_rules_next_step_in_the_reference() -> None:
    ref = reference_side(_arbitrating(SAME_RULE), [], SAME_RULE_LINES, T0 + 8 * DAY)
    assert [(d[1], d[2], d[5]) for d in ref.decisions[A]] == [
        ("delivered", "2026-03-08T13:00:00Z", "2026-03-09T13:00:00Z"),
        ("min_gap", "2026-03-09T13:00:00Z", "2026-03-09T13:00:00Z"),
    ]


def test_a_deferred_firing_does_not_outrank_its_own_rules_next_step_in_the_engine() -> None:
    both(_arbitrating(SAME_RULE), [], SAME_RULE_LINES, T0 + 8 * DAY)


# --- the properties ----------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules_file(), zoned_histories(), horizons, st.one_of(st.none(), horizons))
@example(_file(BERLIN_MORNING, ALPHA), [berlin(parity.purchase(A, T0, "o1", "p1"))], T0 + DAY, None)
def test_engine_and_reference_agree_with_send_windows(
    seed: str, lines: list[bytes], until: int, backfill: int | None
) -> None:
    """With a backfill cut-over now and then: firings due before it are backfill,
    never judged against a window."""
    both(seed, [], lines, until, backfill=backfill)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules_file(), change_times, st.data(), zoned_histories(), horizons)
def test_engine_and_reference_agree_with_send_windows_across_rule_changes(
    seed: str, times: list[int], data: st.DataObject, lines: list[bytes], until: int
) -> None:
    changes = [(t, data.draw(rules_file())) for t in times]
    both(seed, changes, lines, until)


# What the properties' inputs must reach for them to be worth something: each way a
# window decides, in the reference's own words.
PATHS = (
    "outside_window",
    "cancelled",
    "superseded:waiting",
    "sent-later:delivered",
    "sent-later:holdout",
    "sent-later:outranked",
    "sent-later:min_gap",
    "conversion:from-send",
    "undecided",
)


def paths(result: ReferenceResult) -> set[str]:
    out: set[str] = set()
    for f, v in result.firings:
        if f.ruled is not None:
            out.add(f.ruled if not f.deferred else f"{f.ruled}:waiting")
            if f.ruled == "cancelled":
                out.add("cancelled")
        elif f.send_at is not None and f.send_at != f.due:
            out.add(f"sent-later:{v.outcome}")
    out |= {"conversion:from-send" for c in result.conversions if c.firing.sent != c.firing.due}
    return out | ({"undecided"} if result.undecided else set())


@pytest.mark.parametrize("what", PATHS)
def test_the_generator_reaches(what: str) -> None:
    def reaches(case: tuple[str, list[bytes], int]) -> bool:
        seed, lines, until = case
        result = compute_decisions(
            parity.by_time(lines), CoreSettings(), rules=seed, until=until, now=parity.NOW
        )
        return what in paths(result)

    find(
        st.tuples(rules_file(), zoned_histories(), horizons),
        reaches,
        settings=settings(max_examples=3000, database=None, deadline=None, phases=[Phase.generate]),
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules_documents(windows=True), zoned_histories(), horizons)
def test_engine_and_reference_agree_on_any_rules_file_with_windows(
    text: str, lines: list[bytes], until: int
) -> None:
    """Every anchor kind, cadence steps, audiences, channels and disabled rules
    (tests/unit/offline/strategies.py), with windows here and there."""
    both(text, [], lines, until)
