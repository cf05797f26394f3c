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

Memory is one run, or during the merge ``fan_in`` read buffers (64 KiB each) and
one record per open run file, whatever the file's size.  Temporary files go to
``tmpdir`` (default: the system's) and are removed by :meth:`SortedHistory.close`.
"""

from __future__ import annotations

import heapq
import os
import struct
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import orjson

from agents.core.timeutil import parse_timestamp, to_micros
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


@dataclass
class SortStats:
    lines: int = 0  # non-blank lines read
    timed: int = 0
    untimed: int = 0
    controls_dropped: int = 0
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
    except BaseException:
        if untimed_out is not None:
            untimed_out.close()
        if work is not None:
            work.cleanup()
        raise
    return SortedHistory(stats, untimed_path, runs, run, work)


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


__all__ = ["SortStats", "SortedHistory", "event_time", "is_control", "sort_history"]
