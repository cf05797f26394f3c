"""The replay's external sort: any order in, event-time order out, in bounded memory."""

from __future__ import annotations

import itertools
import os
import random
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from agents.core.timeutil import iso, to_micros
from streams.feed.history import HistoryError, SortStats, event_time, sort_history
from streams.feed.producer import ReplayStats, replay_plan
from streams.feed.sample import generate

END = to_micros(datetime(2026, 3, 1, tzinfo=UTC))
DAY = 86_400_000_000


def expected_order(lines: list[bytes]) -> list[bytes]:
    """What the replay must send: untimed lines in file order, then sorted() by
    (time, position in the file); control/advance records dropped."""
    untimed = []
    timed = []
    for pos, line in enumerate(lines):
        t = event_time(line)
        if t is None:
            if b"control/advance" not in line:
                untimed.append(line)
        else:
            timed.append((t, pos, line))
    return untimed + [line for _, _, line in sorted(timed)]


def sent(
    lines: list[bytes], run_bytes: int = 1 << 26, fan_in: int = 64, tmpdir: str | None = None
) -> tuple[list[bytes], SortStats]:
    with sort_history(lines, run_bytes=run_bytes, fan_in=fan_in, tmpdir=tmpdir) as history:
        out = list(history.untimed()) + [line for _, line in history.timed()]
        return out, history.stats


@pytest.fixture(scope="module")
def sample() -> list[bytes]:
    return list(generate(400, 90, seed=7, end=END))


@pytest.mark.parametrize("order", ["as generated", "by customer", "shuffled", "reversed"])
def test_any_order_comes_out_sorted_by_time_with_spills(sample: list[bytes], order: str) -> None:
    lines = list(sample)
    if order == "by customer":
        lines.sort(key=lambda b: orjson.loads(b).get("customer_id", "") if b[-1:] == b"}" else "")
    elif order == "shuffled":
        random.Random(3).shuffle(lines)
    elif order == "reversed":
        lines.reverse()
    # Runs of about 20 kB force dozens of spilled runs and, with fan_in 4, merge rounds.
    out, stats = sent(lines, run_bytes=20_000, fan_in=4)
    assert out == expected_order(lines)
    assert stats.runs > 16 and stats.merge_rounds >= 2
    times = [event_time(line) for line in out]
    timed = [t for t in times if t is not None]
    assert timed == sorted(timed) and len(timed) > 0.98 * len(lines)
    assert stats.earliest == timed[0] and stats.latest == timed[-1]


def test_one_run_in_memory_gives_the_same_result_without_temporary_files(
    sample: list[bytes], tmp_path: Path
) -> None:
    lines = list(reversed(sample))
    in_memory, stats = sent(lines, tmpdir=str(tmp_path))
    assert stats.runs == 0
    spilled, _ = sent(lines, run_bytes=50_000, tmpdir=str(tmp_path))
    assert in_memory == spilled == expected_order(lines)
    assert os.listdir(tmp_path) == []  # closed: every temporary file removed


def test_equal_times_keep_the_file_order_and_offsets_compare_as_instants() -> None:
    lines = [
        b'{"occurred_at":"2026-01-01T01:00:00+01:00","n":1}',
        b'{"occurred_at":"2026-01-01T00:00:00.000001Z","n":2}',
        b'{"occurred_at":"2026-01-01T00:00:00Z","n":3}',
        b'{"occurred_at":"2025-12-31T19:00:00-05:00","n":4}',
    ]
    out, _ = sent(lines, run_bytes=1)  # every line its own run
    assert [orjson.loads(x)["n"] for x in out] == [1, 3, 4, 2]


def test_lines_without_a_usable_time_come_first_in_file_order() -> None:
    ok = b'{"schema":"session/1","occurred_at":"2026-01-02T00:00:00Z"}'
    bad = [
        b'{"schema":"session/1","occurred_at":"2026-01-01T00:00:00"}',  # naive
        b"not json",
        b'["a list"]',
        b'{"schema":"session/1"}',
        b'{"occurred_at": 5}',
        b'{"occurred_at":"soon"}',
    ]
    lines = [ok, bad[0], ok, bad[1], bad[2], b"   ", b"", bad[3], bad[4], bad[5]]
    out, stats = sent(lines, run_bytes=1)
    assert out == [*bad, ok, ok]
    assert stats.untimed == 6 and stats.timed == 2 and stats.lines == 8


def test_control_advance_records_in_the_file_are_dropped() -> None:
    marker = orjson.dumps({"schema": "control/advance", "until": iso(END)})
    event = b'{"schema":"session/1","occurred_at":"2026-01-02T00:00:00Z"}'
    out, stats = sent([marker, event, marker + b"\r\n"])
    assert out == [event]
    assert stats.controls_dropped == 2


def test_an_empty_history_is_empty() -> None:
    out, stats = sent([])
    assert out == [] and stats.latest is None


def test_memory_stays_bounded_by_the_run_size(tmp_path: Path) -> None:
    """A 12 MB file through runs of 1 MB: sorting and merging keep a few MB in
    memory, not the file."""
    import tracemalloc

    rng = random.Random(1)
    path = tmp_path / "history.jsonl"
    with path.open("wb") as out:
        for i in range(60_000):
            t = END - rng.randrange(365 * 86_400) * 1_000_000
            out.write(
                b'{"schema":"session/1","occurred_at":"%s","pad":"%s","i":%d}\n'
                % (iso(t).encode(), b"x" * 120, i)
            )
    assert path.stat().st_size > 10_000_000
    work = tmp_path / "work"
    work.mkdir()
    tracemalloc.start()
    try:
        with (
            path.open("rb") as f,
            sort_history(f, run_bytes=1_000_000, tmpdir=str(work)) as history,
        ):
            previous = None
            count = 0
            for t, _ in history.timed():
                assert previous is None or previous <= t
                previous = t
                count += 1
            runs = history.stats.runs
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 60_000 and runs > 10
    assert peak < 3_000_000, f"peak {peak / 1e6:.1f} MB"


# --- what the replay sends: events in time order, clock markers that are never ahead ---


def plan(
    lines: list[bytes], until: int | None, step: int
) -> tuple[list[tuple[bytes | None, int | None]], ReplayStats]:
    stats = ReplayStats()
    with sort_history(lines, run_bytes=4096) as history:
        return list(replay_plan(history, stats, until=until, step=step)), stats


def test_markers_follow_event_time_and_are_never_ahead_of_an_event(sample: list[bytes]) -> None:
    until = END - 10 * DAY
    steps, stats = plan(list(reversed(sample)), until, DAY)
    marker = None
    times = []
    for line, marker_at in steps:
        if line is None:
            assert marker_at is not None and (marker is None or marker_at > marker)
            marker = marker_at
            continue
        t = event_time(line)
        if t is not None:
            # Dated after every marker before it: the stream never takes it for late.
            assert marker is None or t > marker
            times.append(t)
    assert steps[-1] == (None, until)
    assert max(times) <= until
    held = sum(1 for x in sample if (event_time(x) or 0) > until)
    assert stats.held_back == held > 0
    # About one marker per day of event time (90 days here), plus the final one.
    assert 70 <= stats.markers <= 92
    markers = [m for line, m in steps if line is None and m is not None]
    assert all(b - a >= DAY for a, b in itertools.pairwise(markers[:-1]))


def test_untimed_lines_go_first_and_without_until_there_is_no_final_marker() -> None:
    lines = [
        b'{"schema":"session/1","occurred_at":"2026-01-05T00:00:00Z"}',
        b"not json",
        b'{"schema":"session/1","occurred_at":"2026-01-01T00:00:00Z"}',
    ]
    steps, stats = plan(lines, None, DAY)
    jan1 = to_micros(datetime(2026, 1, 1, tzinfo=UTC))
    assert steps == [
        (b"not json", None),
        (lines[2], None),
        (None, jan1 + 4 * DAY - 1),  # four days on: the clock may move to just before
        (lines[0], None),
    ]
    assert stats.held_back == 0 and stats.markers == 1


def test_no_marker_goes_before_the_earliest_event_time() -> None:
    # Zero times (0001-01-01) in a history are early_timestamp dead letters; a
    # clock marker between them would be one on every input partition (docs/time.md "Time").
    lines = [
        b'{"schema":"session/1","occurred_at":"0001-01-01T00:00:00Z"}',
        b'{"schema":"session/1","occurred_at":"0001-01-05T00:00:00Z"}',
        b'{"schema":"session/1","occurred_at":"1970-01-01T00:00:00Z"}',
        b'{"schema":"session/1","occurred_at":"1970-01-05T00:00:00Z"}',
    ]
    stats = ReplayStats()
    with sort_history(lines, run_bytes=4096) as history:
        steps = list(replay_plan(history, stats, until=None, step=DAY, earliest=0))
    assert steps == [
        (lines[0], None),
        (lines[1], None),
        (lines[2], None),
        (None, 4 * DAY - 1),
        (lines[3], None),
    ]
    assert stats.markers == 1


# --- rules changes in a history (docs/rules.md "Changing rules") -------------------------


def rules_line(effective: str | None, text: str | None = None, **extra: object) -> bytes:
    from agents.core.rules import default_text

    obj: dict[str, object] = {
        "schema": "control/rules",
        "rules": default_text() if text is None else text,
        **extra,
    }
    if effective is not None:
        obj["effective_at"] = effective
    return orjson.dumps(obj)


def other_rules() -> str:
    from agents.core.rules import default_text

    return default_text().replace('steps = ["P7D", "P14D", "P30D"]', 'steps = ["P7D", "P21D"]')


def test_a_rules_change_goes_to_every_partition_before_every_event_at_or_after_it() -> None:
    """Sessions every day for ten days; a change effective on day 4 at noon: the
    marker is sent after the day-4 event and before the day-5 one and before any
    clock marker at or past its time; the summary counts it."""
    from agents.core.rules import load_rules
    from agents.core.rules.history import set_id

    jan1 = to_micros(datetime(2026, 1, 1, tzinfo=UTC))
    events = [
        b'{"schema":"session/1","occurred_at":"%s"}' % iso(jan1 + d * DAY).encode()
        for d in reversed(range(10))
    ]
    text = other_rules()
    change = rules_line(iso(jan1 + 4 * DAY + DAY // 2), text)
    steps, stats = plan([*events[:5], change, *events[5:]], jan1 + 20 * DAY, DAY)
    kinds: list[tuple[str, int]] = []  # what was sent, and its day (markers: their time's)
    for line, marker_at in steps:
        if line is not None and marker_at is not None:
            record = orjson.loads(line)
            assert record == {
                "schema": "control/rules",
                "effective_at": iso(jan1 + 4 * DAY + DAY // 2),
                "rules": text,
                "version": set_id(load_rules(text)),
            }
            kinds.append(("rules", (marker_at - jan1) // DAY))
        elif marker_at is not None:
            kinds.append(("advance", (marker_at - jan1) // DAY))
        else:
            assert line is not None
            t = event_time(line)
            assert t is not None
            kinds.append(("event", (t - jan1) // DAY))
    at = kinds.index(("rules", 4))
    assert kinds[at - 1] == ("event", 4) and kinds[at + 1 :][:2] == [("advance", 4), ("event", 5)]
    assert stats.rules == 1 and [k for k, _ in kinds].count("rules") == 1
    # Nothing at or past the change's time (day 4, noon) was sent before it.
    assert all(day < 4 or (kind, day) == ("event", 4) for kind, day in kinds[:at])


def test_changes_after_the_last_event_go_before_the_final_marker_in_time_order() -> None:
    jan1 = to_micros(datetime(2026, 1, 1, tzinfo=UTC))
    event = b'{"schema":"session/1","occurred_at":"%s"}' % iso(jan1).encode()
    late = rules_line(iso(jan1 + 9 * DAY), other_rules())
    early = rules_line(iso(jan1 + 5 * DAY))
    steps, stats = plan([late, event, early], jan1 + 20 * DAY, DAY)
    assert [m for _, m in steps] == [None, jan1 + 5 * DAY, jan1 + 9 * DAY, jan1 + 20 * DAY]
    assert stats.rules == 2 and stats.markers == 1


def test_a_bad_rules_line_is_an_error_naming_its_line() -> None:
    event = b'{"schema":"session/1","occurred_at":"2026-01-02T00:00:00Z"}'
    cases = {
        rules_line(None): "line 2: control/rules: effective_at is required in a history file",
        rules_line("soon"): "line 2: control/rules: effective_at: ",
        rules_line("2026-01-03T00:00:00Z", "format = 2\n"): "line 2: control/rules: the rules",
        rules_line("2026-01-03T00:00:00Z", version="abc"): "line 2: control/rules: version 'abc'",
    }
    for bad, message in cases.items():
        with pytest.raises(HistoryError) as info:
            sent([event, bad])
        assert str(info.value).startswith(message), str(info.value)
        assert info.value.line == 2
    twice = rules_line("2026-01-03T00:00:00Z", other_rules())
    with pytest.raises(HistoryError, match="line 3: control/rules: effective at 2026-01-03"):
        sent([rules_line("2026-01-03T00:00:00Z"), event, twice])


def test_rules_lines_are_read_not_sent_as_events() -> None:
    event = b'{"schema":"session/1","occurred_at":"2026-01-02T00:00:00Z"}'
    with sort_history([event, rules_line("2026-01-03T00:00:00Z")]) as history:
        assert list(history.untimed()) == [] and len(list(history.timed())) == 1
        (change,) = history.rule_changes
        assert change.line == 2 and history.stats.rule_changes == 1
