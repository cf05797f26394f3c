"""``rules backtest FILE --from-file HISTORY`` with rules changes in the history
(docs/rules.md "Changing rules"): FILE is the seed, each ``control/rules`` line of
the history applies from its effective time, exactly as the offline reference
given those changes; a bad line or a change the seed refuses stops it naming the line.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from agents.core.settings import DAY
from agents.core.timeutil import iso
from streams.feed.sample import generate
from streams.ops.backtest import BacktestError, backtest, load_rules_file
from streams.ops.backtest_report import document, render_table
from tests.unit.streams.ops.test_backtest import (
    CONFIG,
    NOW,
    SHOP_RULES,
    T0,
    assert_same_as_reference,
    write,
)

# The shop's file with second_purchase's ladder changed (restart) and a new rule.
CHANGED = (
    SHOP_RULES.replace('steps = ["P7D", "P14D", "P30D"]', 'steps = ["P5D", "P9D", "P20D", "P45D"]')
    + """
[[rule]]
name = "winback"
priority = 40
anchor = "last_order"
steps = ["P20D", "P50D"]
"""
)


def change(t: int, text: str, **extra: object) -> bytes:
    return orjson.dumps({"schema": "control/rules", "effective_at": iso(t), "rules": text, **extra})


def test_the_history_s_rules_changes_apply_on_top_of_the_file(tmp_path: Path) -> None:
    rules_path = tmp_path / "shop.toml"
    rules_path.write_text(SHOP_RULES)
    rules = load_rules_file(str(rules_path))
    events = list(generate(150, 200, seed=4, end=T0 + 200 * DAY))
    switch = T0 + 100 * DAY
    history = [*events[:40], change(switch, CHANGED), *events[40:]]
    result = backtest(
        str(write(tmp_path, history)),
        CONFIG,
        rules,
        now=NOW,
        workers=2,
        run_bytes=20_000,
        chunk_lines=150,
        keep_decisions=True,
    )
    assert_same_as_reference(result, events, CONFIG, changes=[(switch, CHANGED)])
    outcomes = {d["outcome"] for d in result.decisions}
    assert "superseded" in outcomes
    assert {d["rule"] for d in result.decisions if d["due_at"] > iso(switch)} >= {"winback"}
    assert result.known_steps["second_purchase"] == (1, 2, 3, 4)
    doc = document(result, history="h.jsonl")
    assert [c["effective_at"] for c in doc["rule_changes"]] == [iso(switch)]
    assert doc["rule_changes"][0]["line"] == 41
    assert "rules changes of the history applied: " in render_table(doc)
    # Without the change, the file alone: other decisions.
    alone = backtest(
        str(write(tmp_path, events)), CONFIG, rules, now=NOW, workers=1, keep_decisions=True
    )
    assert alone.decisions != result.decisions and alone.rule_changes == []


def test_a_bad_or_refused_change_stops_the_backtest_naming_its_line(tmp_path: Path) -> None:
    rules_path = tmp_path / "shop.toml"
    rules_path.write_text(SHOP_RULES)
    rules = load_rules_file(str(rules_path))
    events = list(generate(5, 30, seed=4, end=T0 + 30 * DAY))
    bad = [change(T0, SHOP_RULES, version="000000000000")]
    with pytest.raises(BacktestError, match=r"history.jsonl:2: control/rules: version"):
        backtest(str(write(tmp_path, [events[0], *bad])), CONFIG, rules, now=NOW, workers=1)
    lifecycle = SHOP_RULES + '\n[lifecycle]\nat_risk_after = "P20D"\n'
    with pytest.raises(
        BacktestError, match=r"history.jsonl:1: control/rules: lifecycle cannot change"
    ):
        backtest(
            str(write(tmp_path, [change(T0, lifecycle), *events])),
            CONFIG,
            rules,
            now=NOW,
            workers=1,
        )
