"""`retention report --from-file` over a history with rules changes (docs/rules.md
"Changing rules"): the file's ``control/rules`` lines apply on top of the configured
rules from their effective times, as ``retention replay`` sends them; a bad one is
exit 2 naming its line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import orjson
import pytest

from agents.core.rules import default_text
from agents.core.settings import DAY, CoreSettings
from agents.core.timeutil import iso
from agents.offline.reference import compute_decisions
from streams.cli import main
from tests.unit.streams.test_report_cmd import T0, event

# The default file with second_purchase's ladder shortened to two steps (restart).
CHANGED = default_text().replace('steps = ["P7D", "P14D", "P30D"]', 'steps = ["P7D", "P10D"]')


@pytest.fixture(autouse=True)
def _isolated_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RETENTION_HOME", str(tmp_path / "home"))
    for name in list(os.environ):
        if name.startswith("RETENTION_") and name != "RETENTION_HOME":
            monkeypatch.delenv(name)


def change(t: int | None, text: str = CHANGED) -> bytes:
    obj: dict[str, object] = {"schema": "control/rules", "rules": text}
    if t is not None:
        obj["effective_at"] = iso(t)
    return orjson.dumps(obj)


def report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lines: list[bytes]
) -> tuple[int, str, str]:
    history = tmp_path / "events.jsonl"
    history.write_bytes(b"\n".join(lines) + b"\n")
    args = ["report", "--from-file", str(history), "--decisions", "--format", "json"]
    code = main([*args, "--until", iso(T0 + 40 * DAY)])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_history_s_rules_change_applies_from_its_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    order = event("purchase/1", "p1", "alice", T0, order_id="o1", amount="25.00", currency="EUR")
    code, out, _ = report(tmp_path, capsys, [order, change(T0 + 12 * DAY)])
    assert code == 0
    decisions = json.loads(out)
    sp = [
        (d["step"], d["outcome"], d["due_at"]) for d in decisions if d["rule"] == "second_purchase"
    ]
    # Step 2 of the new ladder (day 10) was due before the change on day 12: superseded;
    # the old ladder's steps 2 and 3 (days 14, 30) are gone.
    assert sp == [(1, "delivered", iso(T0 + 7 * DAY)), (2, "superseded", iso(T0 + 10 * DAY))]
    expected = compute_decisions(
        [order], CoreSettings(), until=T0 + 40 * DAY, changes=[(T0 + 12 * DAY, CHANGED)]
    )
    assert decisions == expected.decisions


def test_a_bad_rules_change_is_exit_2_naming_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    order = event("purchase/1", "p1", "alice", T0, order_id="o1", amount="25.00", currency="EUR")
    code, _, err = report(tmp_path, capsys, [order, change(None)])
    assert code == 2
    assert "events.jsonl:2: control/rules: effective_at is required in a history file" in err
    lifecycle = CHANGED.replace('at_risk_after = "P14D"', 'at_risk_after = "P20D"')
    code, _, err = report(tmp_path, capsys, [order, change(T0 + DAY, lifecycle)])
    assert code == 2 and "lifecycle cannot change on a live deployment" in err
