"""`retention report --from-file` runs the configured rules file, the document the
worker runs (docs/rules.md "Rules file"), not the default rules."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agents.core.settings import DAY, CoreSettings
from agents.core.timeutil import iso
from agents.offline.reference import compute_decisions
from streams.cli import main
from tests.unit.streams.test_report_cmd import T0, event

ROOT = Path(__file__).resolve().parents[3]
COLLIDE = ROOT / "docs" / "examples" / "rules" / "collide_arbitrated.toml"


@pytest.fixture(autouse=True)
def _isolated_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RETENTION_HOME", str(tmp_path / "home"))
    for name in list(os.environ):
        if name.startswith("RETENTION_") and name != "RETENTION_HOME":
            monkeypatch.delenv(name)


def test_the_report_runs_the_configured_rules_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    order = {"order_id": "o1", "amount": "25.00", "currency": "EUR"}
    lines = [
        event("purchase/1", "p1", "alice", T0, **order),
        event("session/1", "s1", "alice", T0 + 20 * DAY, session_id="x"),
    ]
    history = tmp_path / "events.jsonl"
    history.write_bytes(b"\n".join(lines) + b"\n")
    monkeypatch.setenv("RETENTION_RULES_FILE", str(COLLIDE))
    code = main(["report", "--from-file", str(history), "--decisions", "--format", "json"])
    out = capsys.readouterr().out
    assert code == 0
    decisions = json.loads(out)
    # Day 7: cross_sell first, second_purchase outranked; day 14: second_purchase's step 2.
    assert [(d["rule"], d["step"], d["outcome"], d["due_at"]) for d in decisions] == [
        ("cross_sell", 1, "delivered", iso(T0 + 7 * DAY)),
        ("second_purchase", 1, "outranked", iso(T0 + 7 * DAY)),
        ("second_purchase", 2, "delivered", iso(T0 + 14 * DAY)),
    ]
    assert all(d.get("rule_version") for d in decisions)
    expected = compute_decisions(
        history.read_bytes().splitlines(), CoreSettings(), rules=COLLIDE.read_text()
    )
    assert decisions == expected.decisions
