"""The engine and the offline reference agree on any valid rules file (docs/rules.md).

Random files (:func:`tests.unit.offline.strategies.rules_documents`) over the
histories of test_reference_vs_engine.py: decisions, conversions and report rows,
fed live in time order and all up front in file order.  The engine reads the
file with ``agents.core.rules.load_rules``, the reference with its own code.
Skipped until the engine side (``agents.core.rules``) is on the branch.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agents.core.settings import CoreSettings
from agents.offline.reference import compute_decisions
from agents.offline.rulebook import read_rules
from tests.unit.offline import test_reference_vs_engine as parity
from tests.unit.offline.strategies import DEFAULT_RULES, rules_documents

rules = pytest.importorskip("agents.core.rules")


def both_sides(text: str, lines: list[bytes], until: int) -> None:
    core = CoreSettings(rules=rules.load_rules(text))
    for feed, watermark, arrival in (
        (parity.by_time(lines), parity.live(until), False),
        (lines, parity.all_pending, True),
    ):
        result = compute_decisions(
            feed, core, rules=text, until=until, now=parity.NOW, arrival_order=arrival
        )
        decisions: dict[str, list[Any]] = {}
        for d in result.decisions:
            decisions.setdefault(d["customer_id"], []).append(
                (d["trigger_id"], d["due_at"], d["outcome"], d["holdout"])
            )
        outcomes = sorted(parity.parity_outcome(o) for o in result.outcomes)
        rows = {r.customer_id: r for r in result.rows}
        zones = {cid: facts.zone_at(until) for cid, facts in result.facts.items()}
        mine = parity.Side(decisions, outcomes, rows, zones)
        parity.assert_same(parity.engine_side(feed, watermark, until, core=core), mine)


def test_both_sides_give_each_rule_the_same_version() -> None:
    text = rules.default_text()
    assert rules.load_rules(text).versions() == {r.name: r.version for r in read_rules(text).rules}
    assert read_rules(text) == read_rules(DEFAULT_RULES)


def test_the_reference_refuses_settings_whose_rules_it_was_not_given() -> None:
    """The engine's parsed rules are not the reference's to read: given only them, it
    would run the default rules and disagree without saying why."""
    core = CoreSettings(rules=rules.load_rules(DEFAULT_RULES))
    lines = parity.every_outcome_case()
    with pytest.raises(ValueError, match="pass its text as rules="):
        compute_decisions(lines, core, until=parity.UNTIL, now=parity.NOW)
    assert compute_decisions(lines, core, rules=DEFAULT_RULES, until=parity.UNTIL, now=parity.NOW)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules_documents(), parity.histories, st.integers(0, parity.SLOTS + 20).map(parity.horizon))
@example(DEFAULT_RULES, parity.every_outcome_case(), parity.UNTIL)
def test_engine_and_reference_agree_on_any_rules_file(
    text: str, lines: list[bytes], until: int
) -> None:
    enabled = {r.name: r.version for r in rules.load_rules(text).active}
    assert enabled == {r.name: r.version for r in read_rules(text).rules}
    both_sides(text, lines, until)
