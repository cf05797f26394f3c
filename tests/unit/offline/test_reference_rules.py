"""The offline reference reading a rules file (docs/rules.md, issue 20).

Hand-built timelines for each feature of the file - audiences decided at each
step's due time, cancelling events, every anchor kind, cadence steps, priorities
and arbitration among simultaneous firings, transactional rules, the lifecycle's
priority - and, over random files and histories, the default file deciding as
the settings do and the guardrails holding.
"""

from __future__ import annotations

import tomllib
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

from agents.core.emissions import Emission, Firing
from agents.core.engine import Engine
from agents.core.settings import DAY, HOUR, CoreSettings
from agents.core.state import CountKey, CustomerState
from agents.core.validation import validate
from agents.offline.reference import ReferenceResult, compute_decisions
from agents.offline.rulebook import canonical, legacy_rulebook, read_rules, rule_version
from tests.unit.offline.strategies import (
    DEFAULT_RULES,
    legacy_document,
    rules_document_dicts,
    rules_documents,
    to_toml,
)
from tests.unit.offline.test_reference import NOW, T0, at, consent, purchase, session
from tests.unit.offline.test_reference_vs_engine import (
    CORE,
    CUSTOMERS,
    SLOTS,
    assert_gap_and_cap_hold,
    histories,
    horizon,
    seeded,
)

A, B, C, H1, H2 = CUSTOMERS  # A, B, C outside the control group of salt "parity" at 50%
NO_HOLDOUT = {"holdout_percent": 0.0}


def doc(*rules: dict[str, Any], **sections: dict[str, Any]) -> str:
    return to_toml({"format": 1, **sections, "rule": list(rules)})


def rule(name: str, priority: int, steps: list[Any], **keys: Any) -> dict[str, Any]:
    return {"name": name, "priority": priority, "steps": steps, **keys}


def run(lines: list[bytes], rules: str, until: int) -> ReferenceResult:
    return compute_decisions(lines, CoreSettings(), rules=rules, until=until, now=NOW)


def made(result: ReferenceResult) -> list[tuple[str, int, str, str]]:
    """(rule, step, due_at, outcome) in output order."""
    return [(d["rule"], d["step"], d["due_at"], d["outcome"]) for d in result.decisions]


# --- the default file -------------------------------------------------------------------------


def test_the_default_file_is_todays_rules_guardrails_and_lifecycle() -> None:
    assert read_rules(DEFAULT_RULES) == legacy_rulebook(CoreSettings())
    assert read_rules(tomllib.loads(DEFAULT_RULES)) == legacy_rulebook(CoreSettings())


def test_the_shipped_default_file_reads_as_todays_rules() -> None:
    """agents/core/rules/default.toml, read from disk with the reference's own code."""
    shipped = Path(__file__).resolve().parents[3] / "agents" / "core" / "rules" / "default.toml"
    assert read_rules(shipped.read_text(encoding="utf-8")) == legacy_rulebook(CoreSettings())


def strip(decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    extra = ("reason", "rule_version", "channel")
    return [{k: v for k, v in d.items() if k not in extra} for d in decisions]


@pytest.mark.parametrize("seed", range(10))
def test_the_settings_written_as_a_file_decide_as_the_settings(seed: int) -> None:
    lines, until = seeded(seed)
    plain = compute_decisions(lines, CORE, until=until, now=NOW)
    filed = compute_decisions(lines, CORE, rules=legacy_document(CORE), until=until, now=NOW)
    assert strip(filed.decisions) == plain.decisions
    assert filed.outcomes == plain.outcomes
    assert filed.rows == plain.rows


def test_the_default_files_reasons_are_todays_reason_texts() -> None:
    """Read from the file, each rule's reason is the engine's text of today."""
    lines = [purchase(A, T0, "a1"), purchase(C, T0, "c1")]
    lines += [purchase(C, T0 + k * 3 * DAY + 7 * HOUR, f"c{k + 1}") for k in (1, 2)]
    until = T0 + 200 * DAY
    result = compute_decisions(lines, CoreSettings(), rules=DEFAULT_RULES, until=until, now=NOW)
    engine = Engine(CoreSettings())
    theirs = {}
    for cid in (A, C):
        state = CustomerState(customer_id=cid, partition=0)
        emitted: list[Emission] = []
        for line in lines:
            event = validate(line, now=NOW, max_bytes=65536, future_tolerance=DAY)
            if event.customer_id == cid:
                emitted += engine.ingest(state, event, event.occurred_at - 1) or []  # type: ignore[arg-type]
        emitted += engine.advance(state, until)
        theirs.update({x.trigger_id: x.reason() for x in emitted if isinstance(x, Firing)})
    mine = {d["trigger_id"]: d["reason"] for d in result.decisions}
    assert {d["rule"] for d in result.decisions} == {"second_purchase", "inactivity", "overdue"}
    assert mine == theirs
    assert mine[result.decisions[0]["trigger_id"]] == (
        "no second order 7 days after the first on 2026-03-02"
    )


# --- audience, cancel, anchors, cadence -------------------------------------------------------


def test_an_audience_that_turns_false_before_a_step_skips_it_and_the_ladder_moves_on() -> None:
    """Spend at most 50 EUR: the second order (40 EUR on day 3) takes the customer out
    before step 2 (day 4) and step 3 (day 6); they are skipped, never retried, never counted."""
    rules = doc(
        rule(
            "small_baskets",
            10,
            ["P2D", "P4D", "P6D"],
            anchor="first_order",
            audience={"spend": {"currency": "EUR", "max": "50.00"}},
        ),
        guardrails=NO_HOLDOUT,
    )
    lines = [purchase(A, T0, "a1", amount="30.00"), purchase(A, T0 + 3 * DAY, "a2", amount="40")]
    result = run(lines, rules, T0 + 20 * DAY)
    assert made(result) == [("small_baskets", 1, at(2), "delivered")]
    assert result.rows[0].decision_counts == {CountKey("small_baskets", 1, "delivered"): 1}
    # Without the second order the customer stays in the audience: all three fire.
    alone = run(lines[:1], rules, T0 + 20 * DAY)
    assert [d["step"] for d in alone.decisions] == [1, 2, 3]


def test_a_session_cancels_a_ladder_that_cancels_on_sessions_even_at_the_due_time() -> None:
    rules = doc(
        rule("browse_abandon", 10, ["P2D", "P4D"], anchor="first_order", cancel_on=["session"]),
        guardrails=NO_HOLDOUT,
    )
    lines = [purchase(A, T0, "a1"), session(A, T0 + 3 * DAY)]
    lines += [purchase(B, T0, "b1"), session(B, T0 + 2 * DAY)]  # at step 1's due time
    result = run(lines, rules, T0 + 20 * DAY)
    assert [(d["customer_id"], d["step"], d["due_at"]) for d in result.decisions] == [(A, 1, at(2))]


def test_a_last_session_anchor_needs_no_order_and_restarts_on_each_session() -> None:
    rules = doc(
        rule("come_back", 10, ["P1D", "P3D"], anchor="last_session"),
        guardrails={**NO_HOLDOUT, "min_gap": "PT1H"},
    )
    lines = [session(A, T0), session(A, T0 + 12 * HOUR), session(A, T0 + 3 * DAY)]
    result = run(lines, rules, T0 + 20 * DAY)
    assert [(d["step"], d["anchor_at"], d["due_at"]) for d in result.decisions] == [
        (1, at(0.5), at(1.5)),
        (1, at(3), at(4)),
        (2, at(3), at(6)),
    ]
    assert result.rows[0].orders == 0  # a prospect


def test_a_cadence_step_waits_k_times_the_customers_median_gap() -> None:
    """Orders on days 0, 2 and 6: gaps 2 and 4 days, median 3, x1.5 = 4.5 days after
    the last order; a customer with two orders a day apart waits the 3-day floor."""
    rules = doc(
        rule(
            "rhythm",
            10,
            [{"cadence": 1.5, "floor": "P3D"}],
            anchor={"kind": "last_order", "min_orders": 2},
            reason="{rule}: {span} since {anchor_date}",
        ),
        guardrails=NO_HOLDOUT,
    )
    lines = [
        purchase(A, T0, "a1"),
        purchase(A, T0 + 2 * DAY, "a2"),
        purchase(A, T0 + 6 * DAY, "a3"),
    ]
    lines += [purchase(B, T0, "b1"), purchase(B, T0 + DAY, "b2")]
    result = run(lines, rules, T0 + 30 * DAY)
    assert [
        (d["customer_id"], d["anchor_at"], d["due_at"], d["threshold"]) for d in result.decisions
    ] == [
        (B, at(1), at(4), "P3D"),
        (A, at(2), at(5), "P3D"),  # after two orders: max(3 days, 1.5 x 2 days)
        (A, at(6), at(10.5), "P4DT12H"),
    ]
    assert result.decisions[-1]["reason"] == "rhythm: 4.5 days since 2026-03-08"


# --- simultaneous firings ---------------------------------------------------------------------


def two_at_once(arbitration: bool) -> str:
    return doc(
        rule("welcome", 10, ["P2D"], anchor="first_order"),
        rule("cross_sell", 20, ["P2D"], anchor="last_order", arbitration=arbitration),
        rule("review", 30, ["P2D"], anchor="last_activity"),
        guardrails={**NO_HOLDOUT, "min_gap": "PT12H"},
    )


def test_simultaneous_firings_go_by_priority_the_later_ones_meet_the_gap() -> None:
    result = run([purchase(A, T0, "a1")], two_at_once(False), T0 + 10 * DAY)
    assert made(result) == [
        ("welcome", 1, at(2), "delivered"),
        ("cross_sell", 1, at(2), "min_gap"),
        ("review", 1, at(2), "min_gap"),
    ]


def test_with_arbitration_a_lower_priority_firing_is_outranked_counted_and_never_attributed() -> (
    None
):
    lines = [purchase(A, T0, "a1"), purchase(A, T0 + 3 * DAY, "a2")]
    result = run(lines, two_at_once(True), T0 + 10 * DAY)
    assert made(result)[:3] == [
        ("welcome", 1, at(2), "delivered"),
        ("cross_sell", 1, at(2), "outranked"),
        ("review", 1, at(2), "min_gap"),  # no arbitration of its own: judged as today
    ]
    assert [(o["rule"], o["group"]) for o in result.outcomes] == [("welcome", "delivered")]
    assert result.rows[0].decision_counts[CountKey("cross_sell", 1, "outranked")] == 1


def test_arbitration_set_for_the_whole_file_outranks_every_later_rule() -> None:
    rules = doc(
        rule("welcome", 10, ["P2D"], anchor="first_order"),
        rule("cross_sell", 20, ["P2D"], anchor="last_order"),
        rule("review", 30, ["P2D"], anchor="last_activity", arbitration=False),
        guardrails={**NO_HOLDOUT, "arbitration": True},
    )
    result = run([purchase(A, T0, "a1")], rules, T0 + 10 * DAY)
    assert [d["outcome"] for d in result.decisions] == ["delivered", "outranked", "min_gap"]


def test_a_transactional_rule_reaches_a_holdout_customer_and_takes_no_marketing_room() -> None:
    rules = doc(
        rule("receipt_followup", 10, ["P1D"], anchor="last_order", transactional=True),
        rule("welcome", 20, ["P1D"], anchor="first_order", arbitration=True),
        guardrails={"holdout_percent": 50.0, "holdout_salt": "parity", "frequency_cap": 1},
    )
    lines = [purchase(A, T0, "a1"), purchase(H1, T0, "h1")]
    lines += [purchase(B, T0, "b1"), consent(B, T0 + 12 * HOUR, "opted_out")]
    result = run(lines, rules, T0 + 10 * DAY)
    by = {(d["customer_id"], d["rule"]): (d["outcome"], d["holdout"]) for d in result.decisions}
    assert by == {
        # Delivered, and the marketing rule at the same instant is neither outranked
        # nor gapped nor capped by it.
        (A, "receipt_followup"): ("delivered", False),
        (A, "welcome"): ("delivered", False),
        # The control group gets the transactional message (holdout reads false).
        (H1, "receipt_followup"): ("delivered", False),
        (H1, "welcome"): ("holdout", True),
        # An opt-out still stops it.
        (B, "receipt_followup"): ("opted_out", False),
        (B, "welcome"): ("opted_out", False),
    }


# --- the lifecycle ----------------------------------------------------------------------------


@pytest.mark.parametrize(("priority", "outcome"), [(14, None), (16, "delivered")])
def test_a_stage_change_at_a_firings_due_time_is_seen_by_the_higher_priority_numbers(
    priority: int, outcome: str | None
) -> None:
    """at_risk from 5 days without activity, lifecycle priority 15: a rule for at_risk
    customers due at exactly that instant sees the new stage only when it comes after."""
    rules = doc(
        rule(
            "save_them", priority, ["P5D"], anchor="last_activity", audience={"stage": ["at_risk"]}
        ),
        guardrails=NO_HOLDOUT,
        lifecycle={"at_risk_after": "P5D", "lapsed_after": "P9D", "priority": 15},
    )
    result = run([purchase(A, T0, "a1")], rules, T0 + 20 * DAY)
    assert [d["outcome"] for d in result.decisions] == ([outcome] if outcome else [])
    assert result.rows[0].stage == "lapsed"  # from the lifecycle, whatever the rules


def test_the_lifecycle_moves_the_stage_without_any_inactivity_rule() -> None:
    rules = doc(
        rule("welcome", 10, ["P1D"], anchor="first_order"),
        lifecycle={"at_risk_after": "P3D", "lapsed_after": "P6D", "priority": 15},
    )
    lines = [purchase(A, T0, "a1"), session(A, T0 + 7 * DAY)]
    stages = [run(lines, rules, T0 + d * DAY).rows[0].stage for d in (2, 3, 6, 7)]
    assert stages == ["new", "at_risk", "lapsed", "reactivated"]


# --- reasons, channels, versions --------------------------------------------------------------


def test_decisions_from_a_file_carry_reason_channel_and_rule_version() -> None:
    rules = doc(
        rule("welcome", 10, ["P1D"], anchor="first_order", channel="sms"),
        rule("winback", 20, ["P3D"], anchor="last_activity"),
        guardrails=NO_HOLDOUT,
    )
    result = run([purchase(A, T0, "a1")], rules, T0 + 10 * DAY)
    first, second = result.decisions
    assert first["reason"] == "welcome step 1: 1 day after 2026-03-02"  # the fallback template
    assert first["channel"] == "sms" and "channel" not in second
    book = read_rules(rules)
    assert [d["rule_version"] for d in result.decisions] == [r.version for r in book.rules]
    assert len(first["rule_version"]) == 12 and first["rule_version"] != second["rule_version"]


def test_rule_version_changes_with_what_a_rule_does_not_with_its_description() -> None:
    base = rule("welcome", 10, ["P1D", "P2D"], anchor="first_order")
    (plain,) = read_rules(doc(base)).rules
    (described,) = read_rules(doc({**base, "description": "Say hello."})).rules
    assert plain.version == described.version == rule_version(plain)
    for change in (
        {"priority": 11},
        {"steps": ["P1D", "P3D"]},
        {"anchor": "last_order"},
        {"cancel_on": ["session"]},
        {"audience": {"orders": {"max": 1}}},
        {"transactional": True},
        {"arbitration": True},
        {"channel": "email"},
        {"reason": "hello"},
    ):
        (other,) = read_rules(doc({**base, **change})).rules
        assert other.version != plain.version, change
    # The canonical form the hash reads: durations in micros, defaults filled in.
    assert canonical(plain)["steps"] == [DAY, 2 * DAY]
    assert canonical(plain)["anchor"] == {"kind": "first_order"}
    assert canonical(plain)["reason"] is None  # the fallback template, not written out


def test_without_a_file_decisions_keep_todays_fields() -> None:
    result = compute_decisions([purchase(A, T0, "a1")], CoreSettings(), until=T0 + 8 * DAY, now=NOW)
    assert "reason" not in result.decisions[0] and "rule_version" not in result.decisions[0]


# --- random files -----------------------------------------------------------------------------


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules_document_dicts(), histories, st.integers(0, SLOTS + 20).map(horizon))
def test_any_valid_file_is_read_and_its_guardrails_hold(
    raw: dict[str, Any], lines: list[bytes], until: int
) -> None:
    text = to_toml(raw)
    assert tomllib.loads(text) == raw
    book = read_rules(text)
    result = compute_decisions(lines, CoreSettings(), rules=text, until=until, now=NOW)
    specs = {r.name: r for r in book.rules}
    per_customer: dict[str, list[tuple[str, str, str, bool]]] = {}
    for d in result.decisions:
        spec = specs[d["rule"]]  # only enabled rules fire
        assert d["rule_version"] == spec.version
        if spec.transactional:
            assert d["outcome"] in ("delivered", "opted_out") and not d["holdout"]
        else:
            per_customer.setdefault(d["customer_id"], []).append(
                (d["trigger_id"], d["due_at"], d["outcome"], d["holdout"])
            )
        if d["outcome"] == "outranked":
            assert spec.arbitration
    core = replace(
        CoreSettings(),
        min_gap=book.guardrails.min_gap,
        frequency_cap=book.guardrails.frequency_cap,
        frequency_window=book.guardrails.frequency_window,
    )
    assert_gap_and_cap_hold(per_customer, core)


FEATURES = (
    "outcome:outranked",
    "outcome:min_gap",
    "transactional:delivered",
    "skip",
    "cadence",
    "anchor:last_session",
    "cancelled",
)


def features(raw: dict[str, Any], lines: list[bytes], until: int) -> set[str]:
    text = to_toml(raw)
    book = read_rules(text)
    result = compute_decisions(lines, CoreSettings(), rules=text, until=until, now=NOW)
    specs = {r.name: r for r in book.rules}
    out = {f"outcome:{d['outcome']}" for d in result.decisions}
    out |= {
        "transactional:delivered"
        for d in result.decisions
        if specs[d["rule"]].transactional and d["delivered"]
    }
    out |= {f"anchor:{specs[d['rule']].anchor}" for d in result.decisions}
    out |= {"cadence" for d in result.decisions if "cadence" in str(canonical(specs[d["rule"]]))}
    # A rule whose ladder gave fewer decisions than without its audience / cancels.
    plain = [
        {k: v for k, v in r.items() if k not in ("audience", "cancel_on")} for r in raw["rule"]
    ]
    bare = compute_decisions(
        lines, CoreSettings(), rules=to_toml({**raw, "rule": plain}), until=until, now=NOW
    )
    counts = Counter(d["rule"] for d in result.decisions)
    bare_counts = Counter(d["rule"] for d in bare.decisions)
    for r in raw["rule"]:
        if counts[r["name"]] < bare_counts[r["name"]]:
            out.add("skip" if "audience" in r else "cancelled" if "cancel_on" in r else "?")
    return out


@pytest.mark.parametrize("what", FEATURES)
def test_the_random_files_reach(what: str) -> None:
    """The property above (and the engine-vs-reference one) is only worth something if
    the random files and histories exercise every feature."""
    found = find(
        st.tuples(rules_document_dicts(), histories, st.integers(0, SLOTS + 20).map(horizon)),
        lambda case: what in features(*case),
        settings=settings(max_examples=3000, database=None, deadline=None, phases=[Phase.generate]),
    )
    assert what in features(*found)


def test_rules_documents_are_toml_text_the_reference_reads() -> None:
    text = find(rules_documents(), lambda t: "[rule.audience]" in t)
    assert read_rules(text).rules


def test_a_step_made_due_by_an_event_after_its_time_is_due_at_that_event() -> None:
    """A nudge is never dated before the facts that made it due.  The anchor (the last
    session, once there is an order) appears with the order on day 5, its steps of 1
    and 2 days already past: both are due on day 5, decided on that day's facts.
    (The random files leave such shapes out until the engine agrees:
    tests/unit/offline/strategies.py.)"""
    rules = doc(
        rule(
            "browsed_then_bought",
            10,
            ["P1D", "P2D"],
            anchor={"kind": "last_session", "min_orders": 1},
        ),
        guardrails={**NO_HOLDOUT, "min_gap": "PT1H"},
    )
    result = run([session(A, T0), purchase(A, T0 + 5 * DAY, "a1")], rules, T0 + 10 * DAY)
    assert made(result) == [
        ("browsed_then_bought", 1, at(5), "delivered"),
        ("browsed_then_bought", 2, at(5), "min_gap"),
    ]
