"""The engine and the offline reference agree across rule changes (docs/rules.md
"Changing rules", issue 21).

Random histories of test_reference_vs_engine.py with a seed rules file and one to
three changes effective among the events (on the half-day grid, so changes often
fall on event and due times): small files built from a few templates - three rules
over first_order, last_activity and last_order anchors, ladders that lengthen,
shorten or move, ``on_change`` pin or restart, rules that come and go, priorities
that swap, cancels, an audience, transactional and arbitration, guardrails that
change.  The engine runs them
through ``Engine(settings).with_history(history)`` (applied = effective), fed in
time order with the clock just short of each event; the reference gets the seed
text and the changes.  Decisions (trigger_id, outcome, due_at, rule_version), in
each customer's emission order, conversions and report rows must be identical.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.core.emissions import Conversion, Firing
from agents.core.engine import Engine
from agents.core.reports import CustomerRow
from agents.core.rules import load_rules
from agents.core.rules.history import RuleHistory, Version, set_id
from agents.core.settings import HOUR, CoreSettings
from agents.core.state import CustomerState
from agents.core.timeutil import iso
from agents.offline.reference import compute_decisions
from tests.unit.offline import test_reference_vs_engine as parity
from tests.unit.offline.strategies import to_toml

Decision = tuple[str, str, str, str]  # trigger_id, outcome, due_at, rule_version

# Equal in every version (a change may not touch them): compatible().
LIFECYCLE = {"at_risk_after": "P3D", "lapsed_after": "P8D", "priority": 15}
LADDERS = (
    ["P1D", "P2D", "P4D"],
    ["P1D", "P3D"],
    ["PT12H", "P2D", "P5D", "P6D"],
    ["P2D", "P6D", "P8D"],
    ["P1D", "P2D"],
)
TEMPLATES: dict[str, dict[str, Any]] = {
    "alpha": {"anchor": "first_order", "cancel_on": [["purchase"], [], ["session"]]},
    "beta": {"anchor": "last_activity", "cancel_on": [[]]},
    "gamma": {"anchor": {"kind": "last_order", "min_orders": 1}, "cancel_on": [[], ["session"]]},
}
PRIORITIES = {"alpha": (10, 31), "beta": (20, 11), "gamma": (30, 21)}


@st.composite
def rules_file(draw: st.DrawFn) -> str:
    rules = []
    used: set[int] = set()
    for name, template in TEMPLATES.items():
        if not draw(st.integers(0, 4)):
            continue  # absent from this version
        priority = draw(st.sampled_from([p for p in PRIORITIES[name] if p not in used]))
        used.add(priority)
        rule: dict[str, Any] = {
            "name": name,
            "priority": priority,
            "anchor": template["anchor"],
            "steps": draw(st.sampled_from(LADDERS)),
            "cancel_on": draw(st.sampled_from(template["cancel_on"])),
            "on_change": draw(st.sampled_from(["pin", "restart", "pin"])),
        }
        if draw(st.integers(0, 5)) == 0:
            rule["audience"] = {"orders": {"max": 2}}
        if draw(st.integers(0, 5)) == 0:
            rule["transactional"] = True
        elif draw(st.integers(0, 5)) == 0:
            rule["arbitration"] = True
        if not rule["cancel_on"]:
            del rule["cancel_on"]
        rules.append(rule)
    guardrails = {
        "holdout_percent": draw(st.sampled_from([0.0, 50.0])),
        "holdout_salt": parity.SALT,
        "min_gap": draw(st.sampled_from(["PT12H", "PT24H"])),
        "frequency_cap": draw(st.sampled_from([2, 4])),
        "frequency_window": "P10D",
        "attribution_window": "P2D",
    }
    return to_toml({"format": 1, "guardrails": guardrails, "lifecycle": LIFECYCLE, "rule": rules})


# Changes on the half-day grid, sometimes a quarter-day off it.
change_times = st.lists(
    st.tuples(st.integers(1, parity.SLOTS + 4), st.sampled_from([0, 0, 6 * HOUR])),
    min_size=1,
    max_size=3,
    unique_by=lambda x: x[0],
).map(lambda xs: sorted(parity.T0 + s * 12 * HOUR + off for s, off in xs))


@st.composite
def rule_histories(
    draw: st.DrawFn, times: st.SearchStrategy[list[int]] = change_times
) -> tuple[str, list[tuple[int, str]]]:
    seed = draw(rules_file())
    return seed, [(t, draw(rules_file())) for t in draw(times)]


# Histories longer than a pin can last (it retires at the switch to the 8th version
# after its own: docs/rules.md "Changing rules", MAX_VERSIONS).
many_change_times = st.lists(
    st.integers(1, parity.SLOTS + 4), min_size=9, max_size=12, unique=True
).map(lambda xs: sorted(parity.T0 + s * 12 * HOUR for s in xs))


Conversions = list[parity.Outcome]  # trigger_id, group, converted_at, order_id, amount, currency


def engine_decisions(
    seed: str, changes: list[tuple[int, str]], lines: list[bytes], until: int
) -> tuple[dict[str, list[Decision]], Conversions, dict[str, CustomerRow]]:
    seed_rules = load_rules(seed)
    versions = [Version(set_id(seed_rules), seed_rules, seed)]
    for t, text in changes:
        rules = load_rules(text)
        versions.append(Version(set_id(rules), rules, text, effective_at=t, applied_at=t))
    core = CoreSettings(rules=seed_rules)
    engine = Engine(core).with_history(RuleHistory(tuple(versions)))
    watermark = parity.live(until)
    per_customer: dict[str, list[Any]] = {}
    for line in lines:
        e = parity._validate(line)
        per_customer.setdefault(e.customer_id, []).append(e)
    decisions: dict[str, list[Decision]] = {}
    conversions = []
    rows = {}
    for cid, events in per_customer.items():
        state = CustomerState(customer_id=cid, partition=0)
        emitted = []
        for e in events:
            emitted += engine.ingest(state, e, watermark(e)) or []
        emitted += engine.advance(state, until)
        for x in emitted:
            if isinstance(x, Firing) and not x.backfill:
                decisions.setdefault(cid, []).append(
                    (x.trigger_id, x.outcome, iso(x.due_at), x.rule_version)
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
    return decisions, sorted(conversions), rows


def reference_decisions(
    seed: str, changes: list[tuple[int, str]], lines: list[bytes], until: int
) -> tuple[dict[str, list[Decision]], Conversions, dict[str, CustomerRow]]:
    result = compute_decisions(
        lines, CoreSettings(), rules=seed, until=until, now=parity.NOW, changes=changes
    )
    decisions: dict[str, list[Decision]] = {}
    for d in result.decisions:
        decisions.setdefault(d["customer_id"], []).append(
            (d["trigger_id"], d["outcome"], d["due_at"], d["rule_version"])
        )
    conversions = sorted(parity.parity_outcome(o) for o in result.outcomes)
    return decisions, conversions, {r.customer_id: r for r in result.rows}


def both(seed: str, changes: list[tuple[int, str]], lines: list[bytes], until: int) -> None:
    timed = parity.by_time(lines)
    engine = engine_decisions(seed, changes, timed, until)
    reference = reference_decisions(seed, changes, timed, until)
    assert engine[0] == reference[0]
    assert engine[1] == reference[1]
    # The report rows: superseded decisions counted alike, stages, spend, spans.
    assert engine[2].keys() == reference[2].keys()
    for cid, row in reference[2].items():
        for f in dataclasses.fields(CustomerRow):
            assert getattr(engine[2][cid], f.name) == getattr(row, f.name), (cid, f.name)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rule_histories(),
    parity.histories,
    st.integers(0, parity.SLOTS + 20).map(parity.horizon),
)
def test_engine_and_reference_agree_across_rule_changes(
    rules: tuple[str, list[tuple[int, str]]], lines: list[bytes], until: int
) -> None:
    seed, changes = rules
    both(seed, changes, lines, until)


def _file(*rules: dict[str, Any]) -> str:
    guardrails = {"holdout_percent": 0.0, "min_gap": "PT12H", "attribution_window": "P2D"}
    return to_toml(
        {"format": 1, "guardrails": guardrails, "lifecycle": LIFECYCLE, "rule": list(rules)}
    )


def test_gap_and_cap_count_the_rules_not_transactional_in_the_version_in_force() -> None:
    """beta is transactional in the seed and pinned when a change makes it
    marketing: its step 1 (day 1, fired under the seed's transactional rule) is
    delivered without a gap, and counts as pressure under the version in force
    then, so gamma's step 1 at the same instant meets min_gap (docs/rules.md
    "Changing rules": the gap and the cap count the delivered nudges of the rules
    not transactional in V(D)).  Without the change beta stays transactional and
    gamma, had it existed, would be delivered."""
    beta = {"name": "beta", "priority": 20, "anchor": "last_activity", "steps": ["P1D", "P2D"]}
    gamma = {"name": "gamma", "priority": 30, "anchor": "last_order", "steps": ["P1D"]}
    seed = _file({**beta, "transactional": True, "on_change": "pin"})
    new = _file({**beta, "on_change": "pin"}, gamma)
    lines = [parity.purchase(parity.CUSTOMERS[0], parity.T0, "o1", "p1")]
    changes = [(parity.T0 + 12 * HOUR, new)]
    until = parity.T0 + 36 * HOUR
    reference, _, _ = reference_decisions(seed, changes, lines, until)
    assert [d[1] for d in reference[parity.CUSTOMERS[0]]] == ["delivered", "min_gap"]
    both(seed, changes, lines, until)
    still = _file({**beta, "transactional": True, "on_change": "pin"}, gamma)
    reference, _, _ = reference_decisions(seed, [(parity.T0 + 12 * HOUR, still)], lines, until)
    assert [d[1] for d in reference[parity.CUSTOMERS[0]]] == ["delivered", "delivered"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rule_histories(many_change_times),
    parity.histories,
    st.integers(0, parity.SLOTS + 20).map(parity.horizon),
)
def test_engine_and_reference_agree_when_pins_outlive_eight_versions(
    rules: tuple[str, list[tuple[int, str]]], lines: list[bytes], until: int
) -> None:
    seed, changes = rules
    both(seed, changes, lines, until)


def test_a_pin_retires_at_the_eighth_version_after_its_own_in_both() -> None:
    """alpha is pinned to the seed at the first change (its ladder of 30 days is
    under way) and every later change alters alpha again with on_change = "pin", so
    the ladder stays on the seed until the switch to the 8th version after it (day
    4.5): there it restarts under that version, its steps already due superseded."""

    seed = _file(_alpha(["P1D", "P10D", "P30D"]))
    changes = [
        (parity.T0 + (2 + i) * 12 * HOUR, _file(_alpha(["P1D", "P2D", f"P{40 + i}D"])))
        for i in range(8)
    ]
    lines = [parity.purchase(parity.CUSTOMERS[0], parity.T0, "o1", "p1")]
    until = parity.T0 + 60 * 24 * HOUR
    reference, _, _ = reference_decisions(seed, changes, lines, until)
    got = [(d[1], d[2]) for d in reference[parity.CUSTOMERS[0]]]
    # Step 1 under the seed (day 1); at day 4.5 step 2 (due day 2) is superseded;
    # step 3 under the 8th change (47 days).
    assert got == [
        ("delivered", iso(parity.T0 + 24 * HOUR)),
        ("superseded", iso(parity.T0 + 48 * HOUR)),
        ("delivered", iso(parity.T0 + 47 * 24 * HOUR)),
    ]
    both(seed, changes, lines, until)


def test_a_file_published_again_renews_the_pins_to_it_in_both() -> None:
    """A rollback: the seed is published again at day 1.5 while a ladder is pinned to
    it (unchanged for alpha: the pin stays), so the pin counts from that switch and
    retires at the 8th version after it (day 5.5), not after the first (day 4.5)."""

    seed = _file(_alpha(["P1D", "P10D", "P30D"]))
    other = [_file(_alpha(["P1D", "P2D", f"P{40 + i}D"])) for i in range(9)]
    files = [other[0], seed, *other[1:]]
    changes = [(parity.T0 + (2 + i) * 12 * HOUR, f) for i, f in enumerate(files)]
    lines = [parity.purchase(parity.CUSTOMERS[0], parity.T0, "o1", "p1")]
    until = parity.T0 + 60 * 24 * HOUR
    reference, _, _ = reference_decisions(seed, changes, lines, until)
    got = [(d[1], d[2]) for d in reference[parity.CUSTOMERS[0]]]
    # Retired at the 10th change (day 5.5): step 2 (due day 2 there) superseded,
    # step 3 under that version (48 days).
    assert got == [
        ("delivered", iso(parity.T0 + 24 * HOUR)),
        ("superseded", iso(parity.T0 + 48 * HOUR)),
        ("delivered", iso(parity.T0 + 48 * 24 * HOUR)),
    ]
    both(seed, changes, lines, until)


def _alpha(steps: list[str]) -> dict[str, Any]:
    """A first-order ladder that pins on a change (the retirement tests above)."""
    return {
        "name": "alpha",
        "priority": 10,
        "anchor": "first_order",
        "steps": steps,
        "on_change": "pin",
    }
