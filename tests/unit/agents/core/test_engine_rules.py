"""The engine on a rules file (docs/rules.md "Rules file", "Lifecycle", "Same instant,
arbitration and transactional rules"): what a shop that writes its own rules sees."""

from __future__ import annotations

from pathlib import Path

from agents.core.emissions import Firing
from agents.core.engine import Engine
from agents.core.rules import default_rules, load_rules
from agents.core.settings import CoreSettings
from agents.core.state import CustomerState
from tests.unit.agents.factories import (
    OPTED_OUT,
    T0,
    at,
    consent,
    feed_in_time_order,
    purchase,
    session,
)

EXAMPLES = Path(__file__).resolve().parents[4] / "docs" / "examples" / "rules"
CID = "cus_rules"
NO_HOLDOUT = "format = 1\n[guardrails]\nholdout_percent = 0\n"


def engine(text: str) -> Engine:
    return Engine(CoreSettings(rules=load_rules(text)))


def example(name: str, holdout: float = 0) -> Engine:
    """An example file of docs/examples/rules with the control group set to ``holdout`` %."""
    text = (EXAMPLES / name).read_text()
    if "[guardrails]" in text:
        text = text.replace("[guardrails]\n", f"[guardrails]\nholdout_percent = {holdout}\n", 1)
    else:
        text = text.replace(
            "format = 1\n", f"format = 1\n[guardrails]\nholdout_percent = {holdout}\n", 1
        )
    return Engine(CoreSettings(rules=load_rules(text)))


def fired(eng: Engine, events: list, until: int = at(days=400)) -> list[Firing]:
    state = CustomerState(customer_id=CID, partition=0)
    out = feed_in_time_order(eng, state, events, until)
    return [e for e in out if isinstance(e, Firing)]


def seen(firings: list[Firing]) -> list[tuple[str, int, int, str]]:
    return [(f.rule, f.step, f.due_at, f.outcome) for f in firings]


def test_the_default_file_is_the_settings_defaults_versions_included() -> None:
    assert CoreSettings().rule_set == default_rules()
    assert CoreSettings().rule_set.versions() == default_rules().versions()
    on_file = Engine(CoreSettings(rules=default_rules()))
    events = [
        purchase(CID, T0),
        session(CID, at(days=20)),
        purchase(CID, at(days=100)),
        purchase(CID, at(days=110)),
    ]
    legacy = fired(Engine(CoreSettings()), events)
    assert [(f.rule, f.step, f.due_at, f.outcome, f.reason(), f.context) for f in legacy] == [
        (f.rule, f.step, f.due_at, f.outcome, f.reason(), f.context) for f in fired(on_file, events)
    ]
    assert {f.rule_version for f in legacy} == set(default_rules().versions().values())


TWO = """
[[rule]]
name = "late"
priority = 20
anchor = "first_order"
steps = ["P7D"]
arbitration = {arbitrate}

[[rule]]
name = "early"
priority = 10
anchor = "first_order"
steps = ["P7D"]
"""


def test_simultaneous_firings_go_by_priority_and_the_second_gets_min_gap() -> None:
    firings = fired(engine(NO_HOLDOUT + TWO.format(arbitrate="false")), [purchase(CID, T0)])
    assert seen(firings) == [
        ("early", 1, at(days=7), "delivered"),
        ("late", 1, at(days=7), "min_gap"),
    ]
    assert [f.rule_index for f in firings] == [0, 1]  # the order the worker emits them in


def test_with_arbitration_the_second_is_outranked() -> None:
    firings = fired(engine(NO_HOLDOUT + TWO.format(arbitrate="true")), [purchase(CID, T0)])
    assert seen(firings) == [
        ("early", 1, at(days=7), "delivered"),
        ("late", 1, at(days=7), "outranked"),
    ]
    assert not firings[1].delivered


def test_the_collide_examples_differ_only_in_the_outcome_of_the_loser() -> None:
    plain = seen(fired(example("collide.toml"), [purchase(CID, T0)]))
    arbitrated = seen(fired(example("collide_arbitrated.toml"), [purchase(CID, T0)]))
    assert plain == [
        ("cross_sell", 1, at(days=7), "delivered"),
        ("second_purchase", 1, at(days=7), "min_gap"),
        ("second_purchase", 2, at(days=14), "delivered"),
    ]
    assert arbitrated == [plain[0], (*plain[1][:3], "outranked"), plain[2]]


def test_a_transactional_rule_is_delivered_to_the_control_group_and_leaves_no_gap() -> None:
    held = example("transactional.toml", holdout=100)
    firings = fired(held, [purchase(CID, T0)], until=at(days=5))
    assert [(f.rule, f.outcome, f.holdout) for f in firings] == [
        ("review_request", "delivered", False),
        ("second_purchase", "holdout", True),
    ]
    firings = fired(example("transactional.toml"), [purchase(CID, T0)], until=at(days=5))
    assert seen(firings) == [
        ("review_request", 1, at(days=3), "delivered"),
        ("second_purchase", 1, at(days=3), "delivered"),
    ]
    assert firings[0].channel == "email" and firings[1].channel is None


def test_a_transactional_rule_still_respects_an_opt_out() -> None:
    events = [purchase(CID, T0), consent(CID, at(days=1), OPTED_OUT)]
    firings = fired(example("transactional.toml"), events, until=at(days=5))
    assert [(f.rule, f.outcome) for f in firings] == [
        ("review_request", "opted_out"),
        ("second_purchase", "opted_out"),
    ]


AUDIENCE = """
[[rule]]
name = "one_order"
priority = 10
anchor = "first_order"
steps = ["P7D", "P14D", "P30D"]
[rule.audience]
days_since_first_order = { max = 10 }
"""


def test_a_step_outside_the_audience_is_skipped_and_the_ladder_moves_on() -> None:
    eng = engine(NO_HOLDOUT + AUDIENCE)
    state = CustomerState(customer_id=CID, partition=0)
    out = feed_in_time_order(eng, state, [purchase(CID, T0)], at(days=100))
    assert seen([e for e in out if isinstance(e, Firing)]) == [
        ("one_order", 1, at(days=7), "delivered")
    ]
    # Steps 2 and 3 were skipped, not waiting: the ladder is done for this anchor.
    assert state.ladders["one_order"].step == 3
    assert eng.next_due(state) is None
    assert sum(state.decision_counts.values()) == 1


CANCEL = """
[[rule]]
name = "visit_then_nothing"
priority = 10
anchor = { kind = "last_order" }
cancel_on = ["session"]
steps = ["P7D", "P14D"]
"""


def test_cancel_on_ends_the_ladder_from_the_first_later_event_of_that_kind() -> None:
    eng = engine(NO_HOLDOUT + CANCEL)
    events = [purchase(CID, T0), session(CID, at(days=10))]
    assert seen(fired(eng, events)) == [("visit_then_nothing", 1, at(days=7), "delivered")]
    # A session at the anchor's own instant is not "after" it.
    assert len(fired(eng, [purchase(CID, T0), session(CID, T0)])) == 2


WELCOME = """
[[rule]]
name = "welcome_back"
priority = 10
anchor = "last_session"
cancel_on = ["purchase"]
steps = ["P1D"]
[rule.audience]
stage = ["reactivated"]
"""


def test_the_lifecycle_moves_stages_without_any_inactivity_rule() -> None:
    eng = engine(NO_HOLDOUT + WELCOME)
    state = CustomerState(customer_id=CID, partition=0)
    feed_in_time_order(eng, state, [purchase(CID, T0)], at(days=13))
    assert state.stage == "new"
    assert eng.wake_at(state) == at(days=14)  # the stage move is on the timeline
    eng.advance(state, at(days=14))
    assert state.stage == "at_risk"
    eng.advance(state, at(days=60))
    assert state.stage == "lapsed"
    # Back after the lapse: reactivated, and the welcome-back step fires a day later.
    out = feed_in_time_order(eng, state, [session(CID, at(days=70))], at(days=72))
    assert seen([e for e in out if isinstance(e, Firing)]) == [
        ("welcome_back", 1, at(days=71), "delivered")
    ]


def test_a_rule_with_a_lower_priority_than_the_lifecycle_sees_the_old_stage() -> None:
    text = (
        NO_HOLDOUT
        + '[lifecycle]\nat_risk_after = "P7D"\npriority = 15\n'
        + '[[rule]]\nname = "before"\npriority = 10\nanchor = "first_order"\nsteps = ["P7D"]\n'
        + '[[rule]]\nname = "after"\npriority = 20\nanchor = "first_order"\nsteps = ["P7D"]\n'
        + "arbitration = false\n"
    )
    firings = fired(engine(text), [purchase(CID, T0)], until=at(days=8))
    assert [(f.rule, f.context["lifecycle_stage"]) for f in firings] == [
        ("before", "new"),
        ("after", "at_risk"),
    ]


def test_reason_templates_and_versions_reach_the_firing() -> None:
    text = (
        NO_HOLDOUT
        + '[[rule]]\nname = "vip"\npriority = 1\nanchor = "first_order"\nsteps = ["PT36H"]\n'
        + 'reason = "{rule}/{step}: {span} since {anchor_date}"\nchannel = "sms"\n'
    )
    (firing,) = fired(engine(text), [purchase(CID, T0)], until=at(days=3))
    assert firing.reason() == "vip/1: 36 hours since 2026-03-02"
    assert firing.rule_version == load_rules(text).versions()["vip"]
    assert firing.channel == "sms"
