"""The engine and the offline reference agree on churn_risk rules (docs/prediction.md
"Crossing", issue 23).

Random purchase histories of three customers over two years (orders at any
minute, several on one UTC day, retries and redeliveries, sessions, opt-outs),
random CDNOW-like BG/NBD and MBG/NBD parameters in days or weeks, a churn_risk
rule of one to three random decreasing thresholds beside two duration rules
(so that min_gap, the cap, arbitration and the holdout meet it), with or without a
send window, with or without a rules change mid-history that brings a new model
(restart or pin) or the same one.  The engine gets the events three ways: in time
order with the clock just short of each, in the file's (shuffled) order before its
clock starts, and shuffled within three days with the clock three days behind the
newest event seen (orders arriving after later ones, still ahead of the clock).
Decisions (in each customer's emission order: trigger_id, outcome, due_at,
rule_version, holdout, send_at, zone, reason, threshold), conversions, report rows
and the firings still deferred at the end must equal the reference's.

Parameters and thresholds are drawn off round numbers: an exact root on a whole
minute is where two float formulas may round a minute apart
(tests/unit/offline/test_churn.py).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

from agents.core.emissions import Conversion, Firing
from agents.core.engine import Engine
from agents.core.ids import trigger_id
from agents.core.reports import CustomerRow
from agents.core.rules import load_rules
from agents.core.rules.history import RuleHistory, Version, set_id
from agents.core.settings import DAY, HOUR, CoreSettings
from agents.core.state import CustomerState
from agents.core.timeutil import iso, parse_timestamp, to_micros
from agents.offline.reference import ReferenceResult, compute_decisions
from schemas.records import Event
from tests.unit.offline import test_reference_vs_engine as parity
from tests.unit.offline.strategies import TABLES, to_toml

T0 = parity.T0
SPAN = 730 * DAY  # two years of history
MINUTE = 60 * 1_000_000
LATENESS = 3 * DAY
CUSTOMERS = parity.CUSTOMERS[:2] + parity.CUSTOMERS[3:4]  # two delivered, one held out
# Off round numbers (module doc): every drawn parameter is scaled by this.
SKEW = 1.000_000_314_159


def _skewed(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False).map(lambda v: v * SKEW)


@st.composite
def nbd(draw: st.DrawFn, unit: str) -> dict[str, float]:
    """CDNOW-like (weeks: r 0.24-0.52, alpha 4.4-6.2, a 0.79-0.89, b 1.6-2.4) and wider;
    alpha in the unit's scale."""
    scale = 7.0 if unit == "day" else 1.0
    return {
        "r": draw(_skewed(0.15, 1.5)),
        "alpha": draw(_skewed(1.0, 15.0)) * scale,
        "a": draw(_skewed(0.2, 1.8)),
        "b": draw(_skewed(0.4, 5.0)),
    }


@st.composite
def model_text(draw: st.DrawFn) -> str:
    unit = draw(st.sampled_from(["day", "week"]))
    lines = ["[model]", f'version = "m{draw(st.integers(0, 99))}"', f'time_unit = "{unit}"']
    for kind in ("mbgnbd", "bgnbd"):
        table = draw(nbd(unit))
        lines.append(f"{kind} = {{ " + ", ".join(f"{k} = {v!r}" for k, v in table.items()) + " }")
    return "\n".join(lines) + "\n"


thresholds = st.lists(_skewed(0.03, 0.95), min_size=1, max_size=3, unique=True).map(
    lambda ps: sorted(ps, reverse=True)
)


@st.composite
def rules_file(draw: st.DrawFn, model: str | None = None) -> str:
    """The churn_risk rule, a first-order and an inactivity ladder, guardrails, maybe a
    window; ``model``: the [model] text (drawn when None)."""
    doc: dict[str, Any] = {
        "format": 1,
        "guardrails": {
            "holdout_percent": 50.0,
            "holdout_salt": parity.SALT,
            "min_gap": draw(st.sampled_from(["PT1H", "PT24H", "P3D"])),
            "frequency_cap": draw(st.sampled_from([2, 4])),
            "frequency_window": "P30D",
            "attribution_window": "P10D",
            "arbitration": draw(st.booleans()),
        },
        "lifecycle": {"at_risk_after": "P30D", "lapsed_after": "P90D", "priority": 15},
    }
    if draw(st.integers(0, 3)) == 0:
        doc["send_window"] = draw(st.sampled_from(TABLES))
    churn: dict[str, Any] = {
        "name": "churn_risk",
        "priority": draw(st.sampled_from([5, 25, 45])),
        "anchor": draw(st.sampled_from(["last_order", {"kind": "last_order", "min_orders": 2}])),
        "model": draw(st.sampled_from(["mbgnbd", "bgnbd"])),
        "steps": [{"p_alive_below": p} for p in draw(thresholds)],
        "on_change": draw(st.sampled_from(["restart", "pin"])),
    }
    if draw(st.integers(0, 3)) == 0:
        churn["send_window"] = draw(st.sampled_from([*TABLES, "none"]))
    if draw(st.integers(0, 4)) == 0:
        churn["audience"] = {"orders": {"max": 3}}
    if draw(st.integers(0, 4)) == 0:
        churn["cancel_on"] = ["session"]
    rules = [churn]
    if draw(st.booleans()):
        rules.append(
            {"name": "welcome", "priority": 10, "anchor": "first_order", "steps": ["P1D", "P20D"]}
        )
    if draw(st.booleans()):
        rules.append(
            {"name": "quiet", "priority": 30, "anchor": "last_activity", "steps": ["P10D", "P40D"]}
        )
    doc["rule"] = rules
    return to_toml(doc) + "\n" + (draw(model_text()) if model is None else model)


# --- histories ---------------------------------------------------------------------------

KINDS = ("purchase",) * 5 + ("same_day", "retry", "dup", "session", "opt_out", "opt_in")


@st.composite
def histories(draw: st.DrawFn) -> list[bytes]:
    """Up to 30 events of three customers at any minute over two years, or over two
    months (orders then often fall between a ladder's steps)."""
    span = draw(st.sampled_from([SPAN, 60 * DAY]))
    choices = draw(
        st.lists(
            st.tuples(
                st.sampled_from(KINDS),
                st.integers(0, len(CUSTOMERS) - 1),
                st.integers(0, span // MINUTE),
                st.integers(0, 11),
            ),
            min_size=1,
            max_size=30,
        )
    )
    lines: list[bytes] = []
    orders: dict[str, list[tuple[str, int]]] = {}
    for i, (kind, who, minute, pick) in enumerate(choices):
        cid = CUSTOMERS[who]
        t = T0 + minute * MINUTE
        amount = ("10.00", "5.50", "120")[pick % 3]
        if kind in ("purchase", "same_day"):
            times = [t] if kind == "purchase" else [t, t + (pick + 1) * 7 * MINUTE]
            for j, when in enumerate(times):
                oid = f"o{i}-{j}"
                lines.append(parity.purchase(cid, when, oid, f"p{i}-{j}", amount))
                orders.setdefault(cid, []).append((oid, when))
        elif kind == "retry" and orders.get(cid):
            oid, when = orders[cid][pick % len(orders[cid])]
            lines.append(parity.purchase(cid, when if pick % 2 else t, oid, f"r{i}", amount))
        elif kind == "dup" and lines:
            lines.append(lines[pick % len(lines)])
        elif kind == "session":
            lines.append(parity.session(cid, t, f"s{i}"))
        elif kind in ("opt_out", "opt_in"):
            status = "opted_out" if kind == "opt_out" else "opted_in"
            lines.append(parity.consent(cid, t, f"c{i}", status))
    return lines


def _time(line: bytes) -> int:
    return to_micros(parse_timestamp(orjson.loads(line)["occurred_at"]))


def shuffled_within(lines: list[bytes], seed: int) -> list[bytes]:
    """Time order with each event moved by up to LATENESS (an arrival order)."""
    rng = random.Random(seed)
    return sorted(lines, key=lambda line: _time(line) + rng.randrange(LATENESS))


# --- the two sides -----------------------------------------------------------------------

# trigger_id, outcome, due_at, rule_version, holdout, send_at, zone, reason, threshold (s)
Decision = tuple[str, str, str, str, bool, str | None, str | None, str, int]
Outcome = tuple[str, str, str, str, str | None]


@dataclasses.dataclass
class Side:
    decisions: dict[str, list[Decision]]
    conversions: list[Outcome]
    rows: dict[str, CustomerRow]
    waiting: list[tuple[str, str]]


def _iso(t: int | None) -> str | None:
    return None if t is None else iso(t)


Clock = Callable[[Event, int], int]  # (event, newest event time seen before it) -> watermark


def engine_side(
    seed: str,
    changes: list[tuple[int, str]],
    lines: list[bytes],
    until: int,
    clock: Clock,
    round_trip: bool = False,
    backfill: int | None = None,
) -> Side:
    seed_rules = load_rules(seed)
    engine = Engine(CoreSettings(rules=seed_rules, backfill_until=backfill))
    if changes:
        versions = [Version(set_id(seed_rules), seed_rules, seed)]
        for t, text in changes:
            rules = load_rules(text)
            versions.append(Version(set_id(rules), rules, text, effective_at=t, applied_at=t))
        engine = engine.with_history(RuleHistory(tuple(versions)))
    per_customer: dict[str, list[Event]] = {}
    for line in lines:
        e = parity._validate(line)
        per_customer.setdefault(e.customer_id, []).append(e)
    side = Side({}, [], {}, [])
    for cid, events in per_customer.items():
        state = CustomerState(customer_id=cid, partition=0)
        emitted: list[Any] = []
        newest = T0 - 1
        for e in events:
            got = engine.ingest(state, e, min(clock(e, newest), until))
            assert not hasattr(got, "code"), got  # nothing refused
            emitted += got or []
            newest = max(newest, e.occurred_at)
            if round_trip:
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
                        x.reason(),
                        x.threshold // 1_000_000,
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


def reference(
    seed: str,
    changes: list[tuple[int, str]],
    lines: list[bytes],
    until: int,
    arrival_order: bool = False,
    backfill: int | None = None,
) -> tuple[Side, ReferenceResult]:
    result = compute_decisions(
        lines,
        CoreSettings(backfill_until=backfill),
        rules=seed,
        until=until,
        now=parity.NOW,
        changes=changes,
        arrival_order=arrival_order,
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
                d["reason"],
                d["threshold_seconds"],
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


def same(engine: Side, ref: Side) -> None:
    assert engine.decisions == ref.decisions
    assert engine.conversions == ref.conversions
    assert engine.waiting == ref.waiting
    assert engine.rows.keys() == ref.rows.keys()
    for cid, row in ref.rows.items():
        for f in dataclasses.fields(CustomerRow):
            assert getattr(engine.rows[cid], f.name) == getattr(row, f.name), (cid, f.name)


def live(event: Event, newest: int) -> int:
    return event.occurred_at - 1


def up_front(event: Event, newest: int) -> int:
    return T0 - 1


def behind(event: Event, newest: int) -> int:
    return newest - LATENESS - 1


def both(
    seed: str,
    changes: list[tuple[int, str]],
    lines: list[bytes],
    until: int,
    shuffle: int = 0,
    backfill: int | None = None,
) -> ReferenceResult:
    """The three feeds of the module doc agree with the reference (with a backfill
    cut-over: the steps due before it are history, never decided)."""
    timed = parity.by_time(lines)
    ref, result = reference(seed, changes, timed, until, backfill=backfill)
    rt = len(lines) % 2 == 0
    same(engine_side(seed, changes, timed, until, live, rt, backfill), ref)
    late = shuffled_within(timed, shuffle)
    ref_late, _ = reference(seed, changes, late, until, arrival_order=True, backfill=backfill)
    same(engine_side(seed, changes, late, until, behind, True, backfill), ref_late)
    ref_any, _ = reference(seed, changes, lines, until, arrival_order=True, backfill=backfill)
    same(engine_side(seed, changes, lines, until, up_front, False, backfill), ref_any)
    return result


horizons = st.integers(30, 3 * 365).map(lambda days: T0 + days * DAY)


# --- the properties ------------------------------------------------------------------------


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules_file(), histories(), horizons, st.integers(0, 2**16), st.one_of(st.none(), horizons))
def test_engine_and_reference_agree_on_churn_risk(
    seed: str, lines: list[bytes], until: int, shuffle: int, backfill: int | None
) -> None:
    both(seed, [], lines, until, shuffle, backfill)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules_file(), st.data(), histories(), horizons, st.integers(0, 2**16))
def test_engine_and_reference_agree_on_churn_risk_across_a_model_change(
    seed: str, data: st.DataObject, lines: list[bytes], until: int, shuffle: int
) -> None:
    """One or two changes mid-history: another model (a new rule version) or the same
    model with other rules; on a whole minute or off it."""
    hours = data.draw(
        st.lists(st.integers(1, SPAN // HOUR), min_size=1, max_size=2, unique=True).map(sorted)
    )
    changes = []
    for h in hours:
        at = T0 + h * HOUR + data.draw(st.sampled_from([0, 0, 17 * MINUTE]))
        keep = data.draw(st.booleans())
        model = seed[seed.index("[model]") :] if keep else None
        changes.append((at, data.draw(rules_file(model=model))))
    both(seed, changes, lines, until, shuffle)


# What the inputs must reach for the properties to be worth something.
PATHS = ("skipped", "at:delivered", "at:holdout", "superseded", "sent-later", "never-due")


def paths(seed: str, result: ReferenceResult) -> set[str]:
    out: set[str] = set()
    for f, v in result.firings:
        if f.rule != "churn_risk":
            continue
        if v.outcome in ("skipped", "superseded"):
            out.add(v.outcome)
        elif f.send_at is not None and f.send_at != f.due:
            out.add("sent-later")
        else:
            out.add(f"at:{v.outcome}")
    # BG/NBD: two orders or more, all on one UTC day, and nothing due.
    fired = {f.customer_id for f, _ in result.firings if f.rule == "churn_risk"}
    if 'model = "bgnbd"' in seed and any(
        fx.order_count >= 2 and len({t // DAY for t in fx.order_times}) == 1 and cid not in fired
        for cid, fx in result.facts.items()
    ):
        out.add("never-due")
    return out


@pytest.mark.parametrize("what", PATHS)
def test_the_generator_reaches(what: str) -> None:
    def reaches(case: tuple[str, list[bytes], int, int, str]) -> bool:
        seed, lines, until, at, change = case
        changes = [(at, change)] if what == "superseded" else []
        result = compute_decisions(
            parity.by_time(lines),
            CoreSettings(),
            rules=seed,
            until=until,
            now=parity.NOW,
            changes=changes,
        )
        return what in paths(seed, result)

    find(
        st.tuples(
            rules_file(),
            histories(),
            horizons,
            st.integers(1, SPAN // DAY).map(lambda d: T0 + d * DAY),
            rules_file(),
        ),
        reaches,
        settings=settings(max_examples=3000, database=None, deadline=None, phases=[Phase.generate]),
    )


# --- hand-picked ---------------------------------------------------------------------------

A = CUSTOMERS[0]
# c = a/(b+x) >= 1.2 for x <= 2: P(alive) at each order is at most 0.45, so a 0.5
# threshold is crossed at every order, a 0.1 one (P(alive) 1/7 at one order) is not.
STEEP = (
    '[model]\nversion = "steep"\ntime_unit = "day"\n'
    "mbgnbd = { r = 0.8, alpha = 3.5, a = 3.0, b = 0.5 }\n"
)


def _file(*rules: dict[str, Any], window: dict[str, Any] | None = None, model: str = STEEP) -> str:
    doc: dict[str, Any] = {
        "format": 1,
        "guardrails": {"holdout_percent": 0.0, "min_gap": "PT24H", "attribution_window": "P2D"},
        "lifecycle": {"at_risk_after": "P30D", "lapsed_after": "P90D", "priority": 15},
    }
    if window is not None:
        doc["send_window"] = window
    doc["rule"] = list(rules)
    return to_toml(doc) + "\n" + model


STEEP_CHURN = {
    "name": "churn_risk",
    "priority": 25,
    "anchor": "last_order",
    "steps": [{"p_alive_below": 0.5}, {"p_alive_below": 0.1}],
}


def test_a_skipped_step_at_an_order_beside_another_rules_step_due_then() -> None:
    """The second order falls exactly when welcome's step is due: churn_risk's crossed
    step 1 is skipped there, welcome delivered, in priority order, in both."""
    welcome = {"name": "welcome", "priority": 10, "anchor": "first_order", "steps": ["P1D"]}
    lines = [parity.purchase(A, T0, "o1", "p1"), parity.purchase(A, T0 + DAY, "o2", "p2")]
    result = both(_file(STEEP_CHURN, welcome), [], lines, T0 + 400 * DAY)
    assert [(f.rule, f.step, v.outcome) for f, v in result.firings][:3] == [
        ("churn_risk", 1, "skipped"),
        ("welcome", 1, "delivered"),
        ("churn_risk", 1, "skipped"),
    ]


def test_a_deferred_churn_nudge_is_superseded_by_the_skip_at_the_next_order() -> None:
    """Step 2 of the first ladder waits for the morning window; an order before the
    send time skips the new ladder's step 1 at once, which supersedes the waiting nudge."""
    window = {"windows": [{"days": "all", "open": "09:00", "close": "09:30"}]}
    first = parity.purchase(A, T0, "o1", "p1")
    ladder = both(_file(STEEP_CHURN, window=window), [], [first], T0 + 400 * DAY)
    step2 = next(f for f, _ in ladder.firings if f.step == 2)
    assert step2.send_at is not None and step2.send_at > step2.due
    order = step2.due + (step2.send_at - step2.due) // 2
    lines = [first, parity.purchase(A, order, "o2", "p2")]
    result = both(_file(STEEP_CHURN, window=window), [], lines, T0 + 400 * DAY)
    assert [(f.step, v.outcome, f.anchor) for f, v in result.firings][:4] == [
        (1, "skipped", T0),
        (2, "superseded", T0),
        (1, "skipped", order),
        (2, "delivered", order),
    ]


def test_a_model_switch_at_the_instant_a_step_falls_due() -> None:
    seed = _file(STEEP_CHURN)
    first = parity.purchase(A, T0, "o1", "p1")
    due = next(f.due for f, _ in both(seed, [], [first], T0 + 400 * DAY).firings if f.step == 2)
    other = STEEP.replace("alpha = 3.5", "alpha = 3.25")
    both(seed, [(due, _file(STEEP_CHURN, model=other))], [first], T0 + 400 * DAY)
    both(
        seed,
        [(due, _file({**STEEP_CHURN, "on_change": "pin"}, model=other))],
        [first],
        T0 + 400 * DAY,
    )
