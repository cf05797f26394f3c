"""``retention replay`` with rules changes in the history (docs/rules.md "Changing rules"):
the summary line counts them, and a bad one stops the replay naming its line.
Kafka is replaced by the replay's plan (streams.feed.producer.replay_plan)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.core.rules import default_text
from streams.cli import main
from streams.config import Config
from streams.feed.history import SortedHistory
from streams.feed.producer import ReplayStats, replay_plan

EVENT = b'{"schema":"session/1","occurred_at":"2026-01-02T00:00:00Z"}'


def change(effective: str) -> bytes:
    return orjson.dumps(
        {"schema": "control/rules", "effective_at": effective, "rules": default_text()}
    )


def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lines: list[bytes]) -> int:
    path = tmp_path / "history.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    sent: list[tuple[bytes | None, int | None]] = []

    async def fake(config: Config, history: SortedHistory, **kw: Any) -> ReplayStats:
        stats = ReplayStats()
        for line, marker_at in replay_plan(history, stats, **kw):
            sent.append((line, marker_at))
            if line is not None and marker_at is None:
                stats.sent += 1
        return stats

    # Kafka is not needed: the command's sender is replaced by the plan it sends.
    monkeypatch.setattr("streams.cli.replay.replay_history", fake)
    return main(["replay", str(path)])


def test_the_summary_counts_the_rules_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [EVENT, change("2026-01-01T00:00:00Z"), change("2026-01-05T00:00:00Z")]
    assert run(tmp_path, monkeypatch, lines) == 0
    out = capsys.readouterr().out
    assert "replayed 1 messages in event-time order" in out
    assert "2 rules changes sent to every input partition" in out
    assert "dropped" not in out


def test_a_bad_rules_line_stops_the_replay_with_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = orjson.dumps({"schema": "control/rules", "rules": default_text()})
    assert run(tmp_path, monkeypatch, [EVENT, EVENT, bad]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(
        "history.jsonl:3: control/rules: effective_at is required in a history file"
    )
