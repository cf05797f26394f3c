"""`retention rules backtest`: what a growth analyst sees on the terminal, in JSON and
in the HTML page (docs/rules.md "Backtest")."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.core.settings import DAY
from agents.core.timeutil import to_micros
from agents.offline.reference import compute_decisions
from streams.cli import main
from streams.config import load_config
from streams.feed.sample import generate

T0 = to_micros(datetime(2026, 3, 2, 10, 0, tzinfo=UTC))


@pytest.fixture(autouse=True)
def _isolated_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RETENTION_HOME", str(tmp_path / "home"))
    for name in list(os.environ):
        if name.startswith("RETENTION_") and name != "RETENTION_HOME":
            monkeypatch.delenv(name)


@pytest.fixture
def history(tmp_path: Path) -> Path:
    path = tmp_path / "history.jsonl"
    path.write_bytes(b"\n".join(generate(200, 180, seed=4, end=T0 + 180 * DAY)) + b"\n")
    return path


TODAY = """
format = 1

[[rule]]
name = "second_purchase"
priority = 10
anchor = "first_order"
cancel_on = ["purchase"]
steps = ["P7D", "P14D", "P30D"]

[[rule]]
name = "inactivity"
priority = 20
anchor = "last_activity"
steps = ["P14D", "P30D", "P60D"]

[[rule]]
name = "overdue"
priority = 30
anchor = { kind = "last_order", min_orders = 3 }
steps = [{ cadence = 2.0, floor = "P7D" }]
"""


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(TODAY)
    return path


@pytest.fixture
def earlier(tmp_path: Path) -> Path:
    """Today's rules with the first second_purchase step at 3 days, not 7, and no overdue."""
    path = tmp_path / "earlier.toml"
    text = TODAY.replace('"P7D", "P14D", "P30D"', '"P3D", "P14D", "P30D"')
    path.write_text(text.split('[[rule]]\nname = "overdue"')[0])
    return path


def backtest(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["rules", "backtest", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_table_shows_each_rule_and_step_with_outcomes_and_lift(
    capsys: pytest.CaptureFixture[str], history: Path, rules: Path
) -> None:
    code, out, err = backtest(capsys, str(rules), "--from-file", str(history), "--workers", "2")
    assert code == 0, err
    assert f"Backtest of {rules} on {history}" in out
    header = next(line for line in out.splitlines() if line.startswith("rule "))
    for column in ("firings", "delivered", "holdout", "opted_out", "min_gap", "frequency_cap"):
        assert column in header
    assert "lift" in header
    for step in ("second_purchase  1", "inactivity       3", "overdue          1"):
        assert step in out
    assert re.search(r"^20\d\d-W\d\d ", out, re.MULTILINE)  # the weekly table


def test_json_totals_are_the_reference_decisions(
    capsys: pytest.CaptureFixture[str], history: Path, rules: Path
) -> None:
    code, out, _ = backtest(
        capsys, str(rules), "--from-file", str(history), "--format", "json", "--since", "2026-05-01"
    )
    assert code == 0
    doc = orjson.loads(out)
    assert doc["schema"] == "backtest/1"
    assert doc["window"]["since"] == "2026-05-01T00:00:00Z"
    config = load_config()
    since = to_micros(datetime(2026, 5, 1, tzinfo=UTC))
    backfill = replace(config, core=replace(config.core, backfill_until=since))
    document = tomllib.loads(TODAY)
    ref = compute_decisions(history.read_bytes().splitlines(), backfill, rules=document)
    assert doc["totals"]["firings"] == len(ref.decisions) > 100
    assert doc["totals"]["delivered"] == sum(d["delivered"] for d in ref.decisions)
    assert doc["history"]["lines"] == ref.lines
    assert doc["history"]["dead_letters"]["by_code"] == ref.dead_letters
    weeks = doc["by_week"]
    assert sum(w["firings"] for w in weeks) == doc["totals"]["firings"]
    assert all(w["week"] >= "2026-W18" for w in weeks)
    rules_out = [r["rule"] for r in doc["by_rule"]]
    assert rules_out[0] == "second_purchase"


def test_html_is_one_self_contained_page_with_charts(
    capsys: pytest.CaptureFixture[str], history: Path, rules: Path, tmp_path: Path
) -> None:
    page = tmp_path / "backtest.html"
    code, out, err = backtest(
        capsys,
        str(rules),
        "--from-file",
        str(history),
        "--baseline",
        str(rules),
        "--format",
        "html",
        "--out",
        str(page),
    )
    assert code == 0 and out == ""
    assert str(page) in err
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and html.count("<svg") >= 4
    assert "<script" not in html and "<link" not in html
    # No address but the SVG namespace: it opens offline.
    assert set(re.findall(r"https?://[^\"' ]+", html)) <= {"http://www.w3.org/2000/svg"}
    assert "Against the baseline" in html and "second_purchase" in html


def test_a_baseline_adds_who_would_newly_or_no_longer_get_a_nudge(
    capsys: pytest.CaptureFixture[str], history: Path, rules: Path, earlier: Path
) -> None:
    args = [str(earlier), "--from-file", str(history), "--baseline", str(rules)]
    code, out, _ = backtest(capsys, *args)
    assert code == 0
    assert f"Against the baseline {rules}" in out
    assert "newly get" in out and "no longer get" in out
    # The earlier first step reaches customers whose second order came between day 3
    # and day 7: they newly get a second_purchase nudge; overdue is gone entirely.
    assert re.search(r"second_purchase: \S+ newly gets a nudge — file: step 1 ", out)
    assert re.search(r"overdue: \S+ no longer gets a nudge — file: no firing; baseline: ", out)
    code, text, _ = backtest(capsys, *args, "--format", "json")
    base: dict[str, Any] = orjson.loads(text)["baseline"]
    assert base["rules_file"] == str(rules)
    diff = {d["rule"]: d for d in base["diff"]}
    assert diff["second_purchase"]["newly"]["customers"] > 0
    overdue = diff["overdue"]["no_longer"]
    delivered = next(r for r in base["by_rule"] if r["rule"] == "overdue")["totals"]["delivered"]
    assert 0 < overdue["customers"] <= delivered
    assert 1 <= len(overdue["examples"]) <= 5
    ids = [e["customer_id"] for e in overdue["examples"]]
    assert ids == sorted(ids)
    assert all(e["file"] == [] and e["baseline"] for e in overdue["examples"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "html"], "--out"),
        (["--since", "2026-06-01", "--until", "2026-05-01"], "--until must be after --since"),
        (["--since", "yesterday"], "--since: expected YYYY-MM-DD"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], history: Path, rules: Path, args: list[str], message: str
) -> None:
    code, out, err = backtest(capsys, str(rules), "--from-file", str(history), *args)
    assert code == 2 and out == ""
    assert message in err and err.count("\n") == 1


def test_a_file_that_is_not_toml_or_a_missing_history_is_refused(
    capsys: pytest.CaptureFixture[str], history: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[[rule]\nname =")
    code, _, err = backtest(capsys, str(bad), "--from-file", str(history))
    assert code == 2 and "is not valid TOML" in err
    bad.write_text('format = 1\n[[rule]]\nname = "x"\nanchor = "tuesday"\npriority = 1\n')
    code, _, err = backtest(capsys, str(bad), "--from-file", str(history))
    assert code == 2 and err.count("\n") == 1
    assert f"{bad} cannot run (" in err and ".anchor: " in err and "tuesday" in err
    code, _, err = backtest(capsys, str(bad), "--from-file", str(tmp_path / "nope.jsonl"))
    assert code == 2 and "no such file" in err


def test_help_names_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["rules", "backtest", "--help"])
    out = capsys.readouterr().out
    for option in ("--from-file", "--baseline", "--since", "--until", "--format", "--workers"):
        assert option in out
