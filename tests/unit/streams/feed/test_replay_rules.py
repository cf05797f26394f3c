"""``retention replay`` with rules changes in the history (docs/rules.md "History files"):
the summary line counts them, a bad one stops the replay naming its line, and every
input partition gets each change before anything at or past its time.  Kafka is
replaced by the replay's plan or by a recorder of what the producer sends."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.core.rules import default_text
from agents.core.timeutil import parse_timestamp, to_micros
from streams.cli import main
from streams.config import Config
from streams.feed import producer
from streams.feed.history import SortedHistory, event_time, sort_history
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


def test_every_input_partition_gets_the_change_before_any_event_at_or_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """replay_history with Kafka replaced by a recorder: each of the four input
    partitions gets the control/rules record, and no partition gets an event or a
    clock marker at or past its time before it."""
    partitions = [
        ("retention.purchases", 0),
        ("retention.purchases", 1),
        ("retention.sessions", 0),
        ("retention.consents", 0),
    ]
    sent: list[tuple[str, int | None, bytes]] = []

    class Recorder:
        async def start(self) -> None: ...

        async def stop(self) -> None: ...

        async def send(
            self,
            topic: str,
            value: bytes,
            *,
            key: bytes | None = None,
            partition: int | None = None,
        ) -> asyncio.Future[object]:
            sent.append((topic, partition, value))
            done: asyncio.Future[object] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done

    async def no_topics(config: Config) -> None: ...

    async def inputs(config: Config) -> list[tuple[str, int]]:
        return partitions

    monkeypatch.setattr(producer, "_producer", lambda config: Recorder())
    monkeypatch.setattr(producer, "ensure_topics", no_topics)
    monkeypatch.setattr(producer, "input_partitions", inputs)
    day = 86_400_000_000
    jan1 = to_micros(parse_timestamp("2026-01-01T00:00:00Z"))
    events = [
        b'{"schema":"session/1","customer_id":"c%d","occurred_at":"2026-01-%02dT00:00:00Z"}'
        % (d, d)
        for d in range(1, 10)
    ]
    effective = jan1 + 4 * day + day // 2  # 2026-01-05T12:00
    lines = [*events, change("2026-01-05T12:00:00Z")]
    with sort_history(lines) as history:
        stats = asyncio.run(producer.replay_history(Config(), history, until=None, step=day))
    assert stats.rules == 1 and stats.sent == 9
    got = [(t, p) for t, p, v in sent if b"control/rules" in v]
    assert sorted(got, key=str) == sorted(partitions, key=str)
    first = min(i for i, (_, _, v) in enumerate(sent) if b"control/rules" in v)
    last = max(i for i, (_, _, v) in enumerate(sent) if b"control/rules" in v)
    for _, _, value in sent[:first]:
        t = event_time(value)
        if t is None:  # a clock marker
            t = to_micros(parse_timestamp(orjson.loads(value)["until"]))
        assert t < effective
    assert all(
        event_time(v) is not None and event_time(v) >= effective
        for _, _, v in sent[last + 1 :]
        if b"session/1" in v
    )
    assert sum(1 for _, _, v in sent[last + 1 :] if b"session/1" in v) == 4  # days 6-9
