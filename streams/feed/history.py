"""A history file in event-time order, in bounded memory (used by ``retention replay``).

The stream clock takes an event dated at or before it as late: the engine has
already decided what fell due before it (docs/time.md "Time").  A history exported in
any other order than by time - by customer, as warehouse exports are, reversed,
shuffled - would therefore give other decisions than the offline reference.
:func:`sort_history` puts the lines in event-time order whatever the file's size:

* each line's sort key is its ``occurred_at`` (micros); lines of equal time keep
  the order of the file;
* lines are collected into runs of at most ``run_bytes``, each run sorted in
  memory and spilled to a temporary file, and the runs are merged with a heap
  (at most ``fan_in`` files open at once; more runs are merged in rounds);
* lines that are not JSON objects or have no parsable ``occurred_at`` cannot be
  placed in time; they are kept in the order they appear (spilled as well) and
  come first, so the worker still turns each into a dead letter;
* ``control/advance`` records in the file are dropped: the replay writes its own.
* ``control/rules`` records (a rules change effective at an event time, docs/rules.md
  "Changing rules") are read by :func:`rules_change` - a bad one stops the sort
  with :class:`HistoryError` naming its line - and kept apart, in time order
  (:attr:`SortedHistory.rule_changes`): the replay sends each to every input
  partition before the events dated at or after its time.

Memory is one run, or during the merge ``fan_in`` read buffers (64 KiB each) and
one record per open run file, whatever the file's size.  Temporary files go to
``tmpdir`` (default: the system's) and are removed by :meth:`SortedHistory.close`.
"""

from __future__ import annotations

import heapq
import itertools
import os
import struct
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import orjson

from agents.core.rules import RulesError, load_rules
from agents.core.rules.history import CONTROL_RULES, set_id
from agents.core.timeutil import iso, parse_timestamp, to_micros
from agents.messages import CONTROL_ADVANCE

DEFAULT_RUN_BYTES = 64 * 1024 * 1024
DEFAULT_FAN_IN = 64
# Per line kept in memory: the line itself plus the tuple around it (a rough bound
# used to decide when a run is full, not an exact measure).
_LINE_OVERHEAD = 120
# Spill record: time (signed 64-bit micros), sequence number, length; then the line.
_HEADER = struct.Struct("<qQI")
# Read buffer per open run file: fan_in of them are open during a merge.
READ_BUFFER = 64 * 1024


def event_time(line: bytes) -> int | None:
    """The line's ``occurred_at`` in micros, or None when it cannot be read."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    try:
        return to_micros(parse_timestamp(obj.get("occurred_at")))
    except (ValueError, TypeError, OverflowError):
        return None


def is_control(line: bytes) -> bool:
    """Whether the line is a ``control/advance`` record (not an event)."""
    if CONTROL_ADVANCE.encode() not in line[:64]:
        return False
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return isinstance(obj, dict) and obj.get("schema") == CONTROL_ADVANCE


class HistoryError(ValueError):
    """A line of a history file that cannot be used (``line``: 1-based)."""

    def __init__(self, line: int, problem: str) -> None:
        self.line = line
        self.problem = problem
        super().__init__(f"line {line}: {problem}")


@dataclass(frozen=True, slots=True)
class RulesChange:
    """A ``control/rules`` line of a history: this rules file from ``effective_at``."""

    effective_at: int  # micros
    text: str
    version: str  # the set id of the text
    line: int  # where it was in the file (1-based)

    def record(self) -> bytes:
        """The ``control/rules`` record the replay sends to every input partition."""
        return orjson.dumps(
            {
                "schema": CONTROL_RULES,
                "effective_at": iso(self.effective_at),
                "rules": self.text,
                "version": self.version,
            }
        )


def rules_change(line: bytes, number: int) -> RulesChange | None:
    """The rules change on ``line`` (line ``number`` of the file), None when the line
    is not a ``control/rules`` record; :class:`HistoryError` when it is one that
    cannot be used: no ``effective_at`` (a history's changes are at event times),
    rules that fail the check, a ``version`` that is not the text's."""
    if CONTROL_RULES.encode() not in line:
        return None
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or obj.get("schema") != CONTROL_RULES:
        return None
    what = CONTROL_RULES
    if obj.get("effective_at") is None:
        raise HistoryError(number, f"{what}: effective_at is required in a history file")
    try:
        effective = to_micros(parse_timestamp(obj["effective_at"]))
    except (ValueError, TypeError, OverflowError) as exc:
        raise HistoryError(number, f"{what}: effective_at: {exc}") from None
    text = obj.get("rules")
    if not isinstance(text, str):
        raise HistoryError(number, f"{what}: rules must be the rules file's text")
    try:
        version = set_id(load_rules(text))
    except RulesError as exc:
        raise HistoryError(number, f"{what}: the rules cannot run: {exc}") from None
    declared = obj.get("version")
    if declared is not None and declared != version:
        raise HistoryError(
            number, f"{what}: version {declared!r} is not the rules' set id ({version})"
        )
    return RulesChange(effective, text, version, number)


def in_time_order(changes: Iterable[RulesChange]) -> list[RulesChange]:
    """The changes by effective time; two at the same instant are an error."""
    ordered = sorted(changes, key=lambda c: (c.effective_at, c.line))
    for a, b in itertools.pairwise(ordered):
        if a.effective_at == b.effective_at:
            raise HistoryError(
                b.line, f"{CONTROL_RULES}: effective at {iso(b.effective_at)} as line {a.line} is"
            )
    return ordered


def read_rule_changes(source: Iterable[bytes]) -> tuple[list[bytes], list[RulesChange]]:
    """A whole history in memory: its lines other than ``control/rules`` ones, in
    file order, and its rules changes in time order (``retention report
    --from-file``, whose reference holds every event anyway)."""
    lines: list[bytes] = []
    changes: list[RulesChange] = []
    for number, raw in enumerate(source, start=1):
        change = rules_change(raw.rstrip(b"\r\n"), number)
        if change is None:
            lines.append(raw)
        else:
            changes.append(change)
    return lines, in_time_order(changes)


@dataclass
class SortStats:
    lines: int = 0  # non-blank lines read
    timed: int = 0
    untimed: int = 0
    controls_dropped: int = 0
    rule_changes: int = 0  # control/rules lines (kept apart: SortedHistory.rule_changes)
    runs: int = 0  # sorted runs spilled to disk (0: the whole file fitted in one run)
    merge_rounds: int = 0  # extra merge passes because there were more runs than fan_in
    earliest: int | None = None
    latest: int | None = None


def _write_record(out: BinaryIO, t: int, seq: int, line: bytes) -> None:
    out.write(_HEADER.pack(t, seq, len(line)))
    out.write(line)


def _read_records(path: str) -> Iterator[tuple[int, int, bytes]]:
    with open(path, "rb", buffering=READ_BUFFER) as f:
        while True:
            head = f.read(_HEADER.size)
            if not head:
                return
            t, seq, n = _HEADER.unpack(head)
            yield t, seq, f.read(n)


@dataclass
class SortedHistory:
    """The result of :func:`sort_history`: untimed lines first, then by event time."""

    stats: SortStats
    _untimed_path: str | None
    _runs: list[str]
    _memory: list[tuple[int, int, bytes]]
    _tmpdir: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)
    # The file's control/rules lines, by effective time.
    rule_changes: list[RulesChange] = field(default_factory=list)

    def untimed(self) -> Iterator[bytes]:
        """Lines without a usable ``occurred_at``, in the order of the file."""
        if self._untimed_path is None:
            return
        for _, _, line in _read_records(self._untimed_path):
            yield line

    def timed(self) -> Iterator[tuple[int, bytes]]:
        """(occurred_at, line) in ascending time; equal times keep the file's order."""
        if not self._runs:
            for t, _, line in self._memory:
                yield t, line
            return
        for t, _, line in heapq.merge(*(_read_records(p) for p in self._runs)):
            yield t, line

    def close(self) -> None:
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self) -> SortedHistory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sort_history(
    lines: Iterable[bytes],
    *,
    run_bytes: int = DEFAULT_RUN_BYTES,
    fan_in: int = DEFAULT_FAN_IN,
    tmpdir: str | None = None,
) -> SortedHistory:
    """Read every line once and sort by event time in bounded memory (module doc)."""
    if run_bytes < 1 or fan_in < 2:
        raise ValueError("run_bytes must be positive and fan_in at least 2")
    stats = SortStats()
    work: tempfile.TemporaryDirectory[str] | None = None
    untimed_out: BinaryIO | None = None
    untimed_path: str | None = None
    runs: list[str] = []
    run: list[tuple[int, int, bytes]] = []
    run_size = 0
    changes: list[RulesChange] = []

    def workdir() -> str:
        nonlocal work
        if work is None:
            work = tempfile.TemporaryDirectory(prefix="retention-replay-", dir=tmpdir)
        return work.name

    def spill() -> None:
        nonlocal run_size
        run.sort()
        path = os.path.join(workdir(), f"run-{len(runs):06d}")
        with open(path, "wb", buffering=256 * 1024) as out:
            for t, seq, line in run:
                _write_record(out, t, seq, line)
        runs.append(path)
        run.clear()
        run_size = 0

    try:
        for seq, raw in enumerate(lines):
            line = raw.rstrip(b"\r\n")
            if not line.strip():
                continue
            stats.lines += 1
            t = event_time(line)
            if t is None:
                if is_control(line):
                    stats.controls_dropped += 1
                    continue
                change = rules_change(line, seq + 1)
                if change is not None:
                    changes.append(change)
                    continue
                stats.untimed += 1
                if untimed_out is None:
                    untimed_path = os.path.join(workdir(), "untimed")
                    untimed_out = open(untimed_path, "wb", buffering=256 * 1024)  # noqa: SIM115
                _write_record(untimed_out, 0, seq, line)
                continue
            stats.timed += 1
            if stats.earliest is None or t < stats.earliest:
                stats.earliest = t
            if stats.latest is None or t > stats.latest:
                stats.latest = t
            run.append((t, seq, line))
            run_size += len(line) + _LINE_OVERHEAD
            if run_size >= run_bytes:
                spill()
        if untimed_out is not None:
            untimed_out.close()
            untimed_out = None
        if runs and run:
            spill()
        elif run:
            run.sort()
        stats.runs = len(runs)
        while len(runs) > fan_in:
            runs = _merge_round(runs, fan_in, workdir())
            stats.merge_rounds += 1
        ordered = in_time_order(changes)
        stats.rule_changes = len(ordered)
    except BaseException:
        if untimed_out is not None:
            untimed_out.close()
        if work is not None:
            work.cleanup()
        raise
    return SortedHistory(stats, untimed_path, runs, run, work, ordered)


def _merge_round(runs: list[str], fan_in: int, directory: str) -> list[str]:
    """Merge groups of ``fan_in`` runs into one run each; removes the inputs."""
    merged: list[str] = []
    for start in range(0, len(runs), fan_in):
        group = runs[start : start + fan_in]
        if len(group) == 1:
            merged.append(group[0])
            continue
        path = os.path.join(directory, f"merge-{os.path.basename(group[0])}-{len(merged):06d}")
        with open(path, "wb", buffering=256 * 1024) as out:
            for t, seq, line in heapq.merge(*(_read_records(p) for p in group)):
                _write_record(out, t, seq, line)
        for p in group:
            os.remove(p)
        merged.append(path)
    return merged


__all__ = [
    "HistoryError",
    "RulesChange",
    "SortStats",
    "SortedHistory",
    "event_time",
    "in_time_order",
    "is_control",
    "read_rule_changes",
    "rules_change",
    "sort_history",
]
