"""``load_rules``: every problem at once, located, in a marketer's words (docs/rules.md
"Checks") - one test per class of problem."""

from __future__ import annotations

import pytest

from agents.core.rules import RulesError, load_rules
from agents.core.rules.check import check_rules
from agents.core.rules.model import Problem

RULE = """
[[rule]]
name = "{name}"
priority = {priority}
anchor = {anchor}
steps = {steps}
"""


def rule(
    name: str = "winback", priority: int = 10, anchor: str = '"last_order"', steps: str = '["P7D"]'
) -> str:
    return RULE.format(name=name, priority=priority, anchor=anchor, steps=steps)


def problems(text: str) -> list[Problem]:
    found = check_rules(text)
    assert found, "the file was accepted"
    return found


def only(text: str) -> Problem:
    (problem,) = problems(text)
    return problem


def test_a_good_file_loads() -> None:
    rules = load_rules("format = 1\n" + rule())
    assert [r.name for r in rules.active] == ["winback"]


def test_every_problem_is_reported_at_once_with_its_place() -> None:
    text = "format = 1\ncolour = 1\n" + rule(steps='["P7D", "P3D"]') + rule(priority=10)
    with pytest.raises(RulesError) as raised:
        load_rules(text)
    messages = [str(p) for p in raised.value.problems]
    assert len(messages) == 4, messages
    assert messages[0].startswith("colour: unknown setting 'colour'")
    assert 'rule "winback".steps[2]' in messages[1] and "strictly increasing" in messages[1]
    assert any("two rules have this name" in m for m in messages)
    assert any("priority 10 is also" in m for m in messages)


def test_not_toml_names_the_line() -> None:
    problem = only("format = 1\n[[rule]\nname = 'x'\n")
    assert problem.path == "file" and problem.line == 2


def test_format_missing_or_unknown() -> None:
    assert "format = 1" in only(rule()).message
    assert "not one this version reads" in only("format = 2\n" + rule()).message


def test_unknown_keys_in_a_rule_name_the_rule_and_the_line() -> None:
    problem = only("format = 1\n" + rule() + "colour = 'red'\n")
    assert problem.path == 'rule "winback".colour' and problem.line == 8


def test_bad_names() -> None:
    problem = only("format = 1\n" + rule(name="Win-Back"))
    assert problem.path == "rule[1].name" and "lower-case letters" in problem.message
    assert (
        "needs a name"
        in only(
            "format = 1\n[[rule]]\npriority = 1\nanchor = 'last_order'\nsteps = ['P1D']\n"
        ).message
    )


def test_steps_not_strictly_increasing() -> None:
    problem = only("format = 1\n" + rule(steps='["P7D", "P7D"]'))
    assert problem.path == 'rule "winback".steps[2]' and "strictly increasing" in problem.message


def test_zero_negative_or_unreadable_durations() -> None:
    assert "longer than zero" in only("format = 1\n" + rule(steps='["PT0S"]')).message
    assert "not an ISO 8601 duration" in only("format = 1\n" + rule(steps='["-P1D"]')).message
    assert "not an ISO 8601 duration" in only("format = 1\n" + rule(steps='["P1M"]')).message
    assert "100 years" in only("format = 1\n" + rule(steps='["P36501D"]')).message


def test_unknown_anchor_or_anchor_setting() -> None:
    assert "not an anchor" in only("format = 1\n" + rule(anchor='"last_visit"')).message
    problem = only("format = 1\n" + rule(anchor='{ kind = "first_order", min_orders = 2 }'))
    assert problem.path == 'rule "winback".anchor.min_orders'
    assert (
        "from 1"
        in only("format = 1\n" + rule(anchor='{ kind = "last_order", min_orders = 0 }')).message
    )


def test_unknown_event_kind_to_cancel_on() -> None:
    problem = only("format = 1\n" + rule() + 'cancel_on = ["refund"]\n')
    assert problem.path == 'rule "winback".cancel_on[1]' and "not an event kind" in problem.message


def test_unknown_audience_condition_or_stage_and_inverted_ranges() -> None:
    text = "format = 1\n" + rule() + "[rule.audience]\nage = { min = 18 }\n"
    problem = only(text)
    assert problem.path == 'rule "winback".audience.age' and problem.line == 9
    assert (
        "not a lifecycle stage"
        in only("format = 1\n" + rule() + "[rule.audience]\nstage = ['vip']\n").message
    )
    text = "format = 1\n" + rule() + "[rule.audience]\norders = { min = 3, max = 1 }\n"
    assert "nobody could match" in only(text).message
    text = "format = 1\n" + rule() + "[rule.audience]\nspend = { currency = 'EUR', min = 50 }\n"
    assert "exact, no rounding" in only(text).message


def test_duplicate_names_or_priorities() -> None:
    assert "two rules have this name" in only("format = 1\n" + rule() + rule(priority=11)).message
    problem = only("format = 1\n" + rule() + rule(name="other"))
    assert problem.path == 'rule "other".priority' and '"winback"' in problem.message
    # A disabled rule may share a priority: it never runs.
    assert check_rules("format = 1\n" + rule() + rule(name="other") + "enabled = false\n") == []
    assert "lifecycle" in only("format = 1\n" + rule(priority=15)).message


def test_unknown_reason_placeholder() -> None:
    problem = only("format = 1\n" + rule() + 'reason = "hello {first_name}"\n')
    assert problem.path == 'rule "winback".reason' and "{first_name}" in problem.message
    assert "without its pair" in only("format = 1\n" + rule() + 'reason = "a { b"\n').message


def test_too_many_rules_or_steps() -> None:
    many = "".join(rule(name=f"r{i}", priority=100 + i) for i in range(17))
    assert "at most 16" in only("format = 1\n" + many).message
    eleven = '["' + '", "'.join(f"P{d}D" for d in range(1, 12)) + '"]'
    assert "at most 10" in only("format = 1\n" + rule(steps=eleven)).message
    ten = '["' + '", "'.join(f"P{d}D" for d in range(1, 11)) + '"]'
    five = "".join(rule(name=f"r{i}", priority=100 + i, steps=ten) for i in range(5))
    assert "40 fit" in only("format = 1\n" + five).message


def test_a_cadence_step_beside_others() -> None:
    problem = only("format = 1\n" + rule(steps='["P3D", { cadence = 2.0, floor = "P7D" }]'))
    assert problem.path == 'rule "winback".steps[2]' and "only step" in problem.message


def test_a_step_that_could_fall_due_before_its_cause() -> None:
    # A cadence step under an anchor orders do not move: a later order would change a
    # due time already passed; a session anchor waiting for orders would date its steps
    # from a session before the order that starts them.
    cadence = '[{ cadence = 2.0, floor = "P7D" }]'
    problem = only("format = 1\n" + rule(anchor='"last_session"', steps=cadence))
    assert problem.path == 'rule "winback".steps' and "every order moves" in problem.message
    assert check_rules("format = 1\n" + rule(anchor='"last_order"', steps=cadence)) == []
    problem = only("format = 1\n" + rule(anchor='{ kind = "last_session", min_orders = 1 }'))
    assert problem.path == 'rule "winback".anchor.min_orders'
    assert "audience.orders = { min = 1 }" in problem.message
    assert check_rules("format = 1\n" + rule(anchor='"last_session"')) == []


def test_lifecycle_at_risk_not_before_lapsed() -> None:
    text = 'format = 1\n[lifecycle]\nat_risk_after = "P60D"\nlapsed_after = "P60D"\n' + rule()
    problem = only(text)
    assert problem.path == "lifecycle" and problem.line == 2


def test_arbitration_on_a_transactional_rule() -> None:
    text = "format = 1\n" + rule() + "transactional = true\narbitration = true\n"
    assert "never outranked" in only(text).message


def test_guardrails_out_of_range_or_over_the_budget() -> None:
    assert (
        "from 0 to 100"
        in only("format = 1\n[guardrails]\nholdout_percent = 120\n" + rule()).message
    )
    tight = 'format = 1\n[guardrails]\nmin_gap = "PT0S"\n' + rule(
        anchor='"last_session"', steps='["PT1M", "P10D"]'
    )
    assert "remember" in only(tight).message


def test_on_change_is_restart_or_pin_and_only_pin_changes_the_version() -> None:
    problem = only("format = 1\n" + rule() + 'on_change = "keep"\n')
    assert problem.path == 'rule "winback".on_change' and problem.line == 8
    assert "'restart' or 'pin'" in problem.message
    plain = load_rules("format = 1\n" + rule()).rules[0]
    restart = load_rules("format = 1\n" + rule() + 'on_change = "restart"\n').rules[0]
    pin = load_rules("format = 1\n" + rule() + 'on_change = "pin"\n').rules[0]
    assert (plain.on_change, pin.on_change) == ("restart", "pin")
    # A file written before the setting keeps its versions; pinning is a change.
    assert restart.version == plain.version != pin.version


MODEL = """
[model]
version = "m1"
time_unit = "week"
mbgnbd = { r = 0.5248, alpha = 6.183, a = 0.8914, b = 1.614 }
"""
CHURN = "[{ p_alive_below = 0.6 }, { p_alive_below = 0.4 }]"


def test_a_churn_risk_rule_with_a_model_loads() -> None:
    rules = load_rules("format = 1\n" + rule(steps=CHURN) + MODEL)
    assert rules.model is not None and set(rules.model.kinds) == {"mbgnbd"}
    assert [s.label() for s in rules.active[0].steps] == ["P(alive) < 0.6", "P(alive) < 0.4"]


def test_a_churn_risk_rule_without_a_usable_model() -> None:
    problem = only("format = 1\n" + rule(steps=CHURN))
    assert problem.path == 'rule "winback".steps' and "usable mbgnbd model" in problem.message
    assert problem.line == 7
    # No table for the rule's kind.
    kind = only("format = 1\n" + rule(steps=CHURN) + 'model = "bgnbd"\n' + MODEL)
    assert kind.path == 'rule "winback".steps' and "usable bgnbd model" in kind.message
    # A parameter <= 0 or not a number, a unit neither day nor week: located in [model].
    bad = problems(
        "format = 1\n"
        + rule(steps=CHURN)
        + MODEL.replace("r = 0.5248", "r = 0").replace('"week"', '"month"')
    )
    paths = [p.path for p in bad]
    assert "model.mbgnbd.r" in paths and "model.time_unit" in paths
    assert 'rule "winback".steps' in paths
    assert next(p for p in bad if p.path == "model.time_unit").line == 11


def test_churn_risk_thresholds_in_0_1_strictly_decreasing_and_not_mixed() -> None:
    out_of_range = only("format = 1\n" + rule(steps="[{ p_alive_below = 1.0 }]") + MODEL)
    assert out_of_range.path == 'rule "winback".steps[1].p_alive_below'
    rising = only(
        "format = 1\n" + rule(steps="[{ p_alive_below = 0.4 }, { p_alive_below = 0.6 }]") + MODEL
    )
    assert rising.path == 'rule "winback".steps[2].p_alive_below'
    assert "strictly decreasing" in rising.message
    mixed = only("format = 1\n" + rule(steps='[{ p_alive_below = 0.4 }, "P7D"]') + MODEL)
    assert mixed.path == 'rule "winback".steps[2]' and "cannot be mixed" in mixed.message


def test_churn_risk_needs_the_last_order_anchor() -> None:
    problem = only("format = 1\n" + rule(steps=CHURN, anchor='"last_activity"') + MODEL)
    assert problem.path == 'rule "winback".anchor' and "last_order" in problem.message


def test_a_model_without_a_churn_risk_rule_is_accepted_and_a_new_model_changes_the_version() -> (
    None
):
    plain = load_rules("format = 1\n" + rule())
    assert load_rules("format = 1\n" + rule() + MODEL).rules[0].version == plain.rules[0].version
    old = load_rules("format = 1\n" + rule(steps=CHURN) + MODEL)
    new = load_rules("format = 1\n" + rule(steps=CHURN) + MODEL.replace("6.183", "6.2"))
    assert old.rules[0].version != new.rules[0].version
