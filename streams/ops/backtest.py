"""`retention rules backtest`: a rules file replayed over a history, on disk and on every core.

docs/rules.md "Backtest" is the user's side.  How it is computed:

1. **Sort pass** (:func:`sort_history`): the history's non-blank lines are keyed by
   (customer_id, line number) and sorted into runs of at most ``run_bytes`` in memory,
   each written to disk (an external sort, as ``retention replay`` sorts by time); a
   line that is not a JSON object with a string ``customer_id`` (or is over the
   message size limit) goes to a file of its own: it can only be a dead letter.  The
   same pass finds the horizon, the latest ``occurred_at`` of a valid line.  The
   parsing is done in the pool, a block of lines a task (:func:`key_lines`); the
   parent only sorts and writes.
2. **Chunks** (:func:`customer_chunks`): the runs are merged (``heapq.merge``) and cut
   into groups of whole customers.  Customers are independent in the reference
   (dedup, guardrails and conversions are per customer), so each chunk runs through
   :func:`agents.offline.reference.compute_decisions` on its own, in a pool of
   processes, with the same horizon, processor clock and input bounds.
3. **Tally** (:class:`Tally`): each chunk comes back as counts per rule, step, ISO
   week of the due time and outcome, conversions per group, the input counters and
   (with a baseline) the customers whose nudges differ; those add up.

Memory is bounded by the sort runs, the chunks in flight and the tallies, never by
the history.  A dead-letter-only line counts exactly as the reference counts it,
in whichever chunk it lands.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import struct
import sys
import tempfile
import time
import tomllib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, TypeVar

import orjson

from agents.core.rules.check import check_rules
from agents.core.timeutil import TimeFormatError, parse_timestamp, to_micros
from agents.core.validation import ValidationError, validate
from agents.offline.reference import ReferenceResult, compute_decisions
from agents.offline.rulebook import Rulebook, legacy_rulebook, read_rules
from streams.config import Config

DEFAULT_RUN_BYTES = 64 * 1024 * 1024
# Lines keyed (customer id, validity of the latest time) per task of the sort pass.
KEY_BLOCK_LINES = 10_000
# Lines per chunk handed to a worker (whole customers: a chunk ends at the first
# customer boundary past this).  Small enough that a worker's reference run stays
# a few tens of MiB, large enough that pickling is noise.
DEFAULT_CHUNK_LINES = 20_000
# Chunks submitted and not yet collected, per worker: bounds the parent's memory.
IN_FLIGHT_PER_WORKER = 2
EXAMPLES = 5
# Decisions of one rule shown for an example customer, per file.
EXAMPLE_DECISIONS = 6
NO_FIRING = "no firing"

T = TypeVar("T")
R = TypeVar("R")
_RUN_HEADER = struct.Struct("<IQI")  # customer id bytes, line number, line bytes


class BacktestError(ValueError):
    """A rules file or history the backtest cannot use (the message says why)."""


# --- the rules file ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RulesFile:
    """A rules file as the backtest hands it on: where it came from and what it says."""

    path: str
    # What tomllib read; None: the configuration's rules and guardrails (today's
    # three rules, RETENTION_* settings), for the bench.
    document: dict[str, Any] | None


def load_rules_file(path: str) -> RulesFile:
    """Read ``path`` as a rules file (TOML, docs/rules.md); :class:`BacktestError` if not."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BacktestError(f"no such rules file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BacktestError(f"cannot read the rules file {path}: {exc}") from None
    # The engine's own check: the backtest runs exactly the files a worker would run.
    problems = check_rules(text)
    if problems:
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        raise BacktestError(f"{path} cannot run ({count}): " + "; ".join(map(str, problems)))
    rules = RulesFile(path, tomllib.loads(text))
    _rulebook(rules, Config())  # read once here, so a bad file stops before the history
    return rules


def _rulebook(rules: RulesFile, config: Config) -> Rulebook:
    if rules.document is None:
        return legacy_rulebook(config.core)
    try:
        return read_rules(rules.document)
    except (ValueError, KeyError, TypeError) as exc:
        what = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise BacktestError(f"{rules.path}: not a usable rules file: {what}") from None


def rule_steps(rules: RulesFile, config: Config) -> dict[str, tuple[int, ...]]:
    """Each enabled rule's step numbers, by priority: a step that never fires shows 0."""
    return {r.name: tuple(range(1, len(r.steps) + 1)) for r in _rulebook(rules, config).rules}


def run_reference(
    lines: Iterable[bytes],
    config: Config,
    rules: RulesFile,
    *,
    until: int | None,
    now: int,
) -> ReferenceResult:
    """The one place the rules file reaches the offline reference."""
    return compute_decisions(lines, config, rules=rules.document, until=until, now=now)


# --- sort pass ---------------------------------------------------------------------


@dataclass(slots=True)
class SortedHistory:
    """The history's lines in runs sorted by (customer_id, line number), on disk."""

    folder: Path
    runs: list[Path] = field(default_factory=list)
    # Lines that cannot name a customer: JSON-less, customer-less or oversized.
    strays: Path | None = None
    stray_lines: int = 0
    lines: int = 0  # non-blank lines read
    latest: int | None = None  # latest occurred_at of a valid line (micros)


@dataclass(frozen=True, slots=True)
class InputBounds:
    """What decides whether a line is a valid event: the reference's own bounds."""

    max_bytes: int
    future_tolerance: int
    earliest: int
    now: int

    @classmethod
    def of(cls, config: Config, now: int) -> InputBounds:
        return cls(config.max_message_bytes, config.future_tolerance, config.min_event_time, now)


def key_lines(bounds: InputBounds, lines: list[bytes]) -> tuple[list[str | None], int | None]:
    """Each line's customer_id (None: not a JSON object with a string one, or too
    large: it can only be a dead letter) and the latest occurred_at of a valid line.

    Only a line dated after the latest so far is validated (the chunks validate
    every line again); on a history in time order that is most of them, which is
    why this runs in the pool."""
    keys: list[str | None] = []
    latest: int | None = None
    for line in lines:
        customer, t = _key_and_time(line, bounds.max_bytes)
        keys.append(customer)
        if customer is None or t is None or (latest is not None and t <= latest):
            continue
        try:
            event = validate(
                line,
                now=bounds.now,
                max_bytes=bounds.max_bytes,
                future_tolerance=bounds.future_tolerance,
                earliest=bounds.earliest,
            )
        except ValidationError:
            continue
        latest = event.occurred_at
    return keys, latest


def _key_and_time(line: bytes, max_bytes: int) -> tuple[str | None, int | None]:
    if len(line) > max_bytes:
        return None, None
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(obj, dict):
        return None, None
    customer = obj.get("customer_id")
    if not isinstance(customer, str):
        return None, None
    try:
        return customer, to_micros(parse_timestamp(obj.get("occurred_at")))
    except (TimeFormatError, ValueError, OverflowError):
        return customer, None


class _RunWriter:
    def __init__(self, history: SortedHistory, run_bytes: int) -> None:
        self.history = history
        self.run_bytes = run_bytes
        self.buffer: list[tuple[bytes, int, bytes]] = []
        self.size = 0

    def add(self, customer: bytes, number: int, line: bytes) -> None:
        self.buffer.append((customer, number, line))
        # The tuple and its two bytes objects cost about 150 bytes beyond the data.
        self.size += len(customer) + len(line) + 150
        if self.size >= self.run_bytes:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        self.buffer.sort()
        path = self.history.folder / f"run-{len(self.history.runs):05d}"
        with path.open("wb") as out:
            for customer, number, line in self.buffer:
                out.write(_RUN_HEADER.pack(len(customer), number, len(line)))
                out.write(customer)
                out.write(line)
        self.history.runs.append(path)
        self.buffer = []
        self.size = 0


def _blocks(source: IO[bytes], size: int) -> Iterator[list[tuple[int, bytes]]]:
    """Non-blank lines with their line numbers, ``size`` at a time."""
    block: list[tuple[int, bytes]] = []
    for number, raw in enumerate(source):
        line = raw.rstrip(b"\r\n")
        if line.strip():
            block.append((number, line))
            if len(block) >= size:
                yield block
                block = []
    if block:
        yield block


def _key_block(
    args: tuple[InputBounds, list[tuple[int, bytes]]],
) -> tuple[list[str | None], int | None]:
    bounds, block = args
    return key_lines(bounds, [line for _, line in block])


def sort_history(
    source: IO[bytes],
    folder: Path,
    bounds: InputBounds,
    *,
    run_bytes: int = DEFAULT_RUN_BYTES,
    pool: ProcessPoolExecutor | None = None,
    in_flight: int = 1,
    block_lines: int = KEY_BLOCK_LINES,
) -> SortedHistory:
    """Key every non-blank line of ``source`` by customer and write sorted runs to
    ``folder``; with a pool, blocks of lines are keyed there, in file order."""
    history = SortedHistory(folder=folder)
    writer = _RunWriter(history, run_bytes)
    strays_path = folder / "strays"
    blocks = ((bounds, block) for block in _blocks(source, block_lines))
    with strays_path.open("wb") as strays:
        for (_, block), (keys, latest) in ordered_map(pool, _key_block, blocks, in_flight):
            history.lines += len(block)
            if latest is not None and (history.latest is None or latest > history.latest):
                history.latest = latest
            for (number, line), customer in zip(block, keys, strict=True):
                if customer is None:
                    strays.write(line + b"\n")
                    history.stray_lines += 1
                else:
                    writer.add(customer.encode("utf-8", "surrogatepass"), number, line)
    writer.flush()
    history.strays = strays_path
    return history


def _read_run(path: Path) -> Iterator[tuple[bytes, int, bytes]]:
    header = _RUN_HEADER.size
    with path.open("rb") as run:
        while head := run.read(header):
            key_len, number, line_len = _RUN_HEADER.unpack(head)
            customer = run.read(key_len)
            yield customer, number, run.read(line_len)


def customer_chunks(history: SortedHistory, chunk_lines: int) -> Iterator[list[bytes]]:
    """Lines in chunks of whole customers (each customer's lines in file order), then
    the stray lines in chunks of ``chunk_lines``."""
    chunk: list[bytes] = []
    previous: bytes | None = None
    for customer, _, line in heapq.merge(*(_read_run(p) for p in history.runs)):
        if customer != previous and len(chunk) >= chunk_lines:
            yield chunk
            chunk = []
        previous = customer
        chunk.append(line)
    if chunk:
        yield chunk
    if history.strays is not None and history.stray_lines:
        chunk = []
        with history.strays.open("rb") as strays:
            for line in strays:
                chunk.append(line.rstrip(b"\n"))
                if len(chunk) >= chunk_lines:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk


# --- tally -------------------------------------------------------------------------

# (rule, step, ISO week of the due time, what) -> count; ``what`` is an outcome code
# or "conversions:<group>".
CountKey = tuple[str, int, str, str]


def iso_week(micros: int) -> str:
    """The ISO 8601 week of an instant (UTC), e.g. ``2026-W10``."""
    day = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


@dataclass(slots=True)
class Example:
    """One customer whose nudges from a rule differ between the file and the baseline."""

    customer_id: str
    file: list[dict[str, Any]]  # their decisions of that rule under the file
    baseline: list[dict[str, Any]]  # ... and under the baseline


@dataclass(slots=True)
class RuleDiff:
    """Customers who would newly get / no longer get a delivered nudge from one rule."""

    newly: int = 0
    no_longer: int = 0
    newly_examples: list[Example] = field(default_factory=list)
    no_longer_examples: list[Example] = field(default_factory=list)

    def merge(self, other: RuleDiff) -> None:
        self.newly += other.newly
        self.no_longer += other.no_longer
        self.newly_examples = _smallest(self.newly_examples + other.newly_examples)
        self.no_longer_examples = _smallest(self.no_longer_examples + other.no_longer_examples)


def _smallest(examples: list[Example]) -> list[Example]:
    # The smallest customer ids: the same examples however the history was chunked.
    return sorted(examples, key=lambda e: e.customer_id)[:EXAMPLES]


@dataclass(slots=True)
class Tally:
    """What one rules file did to a set of customers: counts that add up across chunks."""

    counts: dict[CountKey, int] = field(default_factory=dict)
    lines: int = 0
    events: int = 0
    duplicates: int = 0
    order_retries: int = 0
    customers: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)

    def add(self, key: CountKey, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def merge(self, other: Tally) -> None:
        for key, n in other.counts.items():
            self.add(key, n)
        self.lines += other.lines
        self.events += other.events
        self.duplicates += other.duplicates
        self.order_retries += other.order_retries
        self.customers += other.customers
        for code, n in other.dead_letters.items():
            self.dead_letters[code] = self.dead_letters.get(code, 0) + n

    @classmethod
    def of(cls, result: ReferenceResult) -> Tally:
        tally = cls(
            lines=result.lines,
            events=result.events,
            duplicates=result.duplicates,
            order_retries=result.order_retries,
            customers=result.customers,
            dead_letters=dict(result.dead_letters),
        )
        weeks: dict[str, str] = {}  # trigger_id -> week of the firing's due time
        week_of_day: dict[int, str] = {}
        for (firing, verdict), decision in zip(result.firings, result.decisions, strict=True):
            day = firing.due // 86_400_000_000
            week = week_of_day.get(day)
            if week is None:
                week = week_of_day[day] = iso_week(firing.due)
            weeks[decision["trigger_id"]] = week
            tally.add((firing.rule, firing.step, week, verdict.outcome))
        for outcome in result.outcomes:
            key = (outcome["rule"], outcome["step"], weeks[outcome["trigger_id"]])
            tally.add((*key, f"conversions:{outcome['group']}"))
        return tally


def _delivered_by_rule(result: ReferenceResult) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """(rule, customer) -> that customer's decisions of that rule, in due order."""
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for decision in result.decisions:
        out.setdefault((decision["rule"], decision["customer_id"]), []).append(decision)
    return out


def _brief(decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"step": d["step"], "due_at": d["due_at"], "outcome": d["outcome"]}
        for d in decisions[:EXAMPLE_DECISIONS]
    ]


def diff_results(file: ReferenceResult, baseline: ReferenceResult) -> dict[str, RuleDiff]:
    """Per rule, the customers with a delivered nudge under one file and none under the other."""
    mine, theirs = _delivered_by_rule(file), _delivered_by_rule(baseline)
    out: dict[str, RuleDiff] = {}
    for key in sorted(set(mine) | set(theirs)):
        rule, customer = key
        got = any(d["delivered"] for d in mine.get(key, []))
        had = any(d["delivered"] for d in theirs.get(key, []))
        if got == had:
            continue
        diff = out.setdefault(rule, RuleDiff())
        example = Example(customer, _brief(mine.get(key, [])), _brief(theirs.get(key, [])))
        if got:
            diff.newly += 1
            diff.newly_examples = _smallest([*diff.newly_examples, example])
        else:
            diff.no_longer += 1
            diff.no_longer_examples = _smallest([*diff.no_longer_examples, example])
    return out


# --- one chunk ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChunkJob:
    """What every chunk is run with (the same for all of them)."""

    config: Config
    rules: RulesFile
    baseline: RulesFile | None
    horizon: int | None
    now: int
    keep_decisions: bool = False


@dataclass(slots=True)
class ChunkResult:
    tally: Tally
    baseline: Tally | None = None
    diff: dict[str, RuleDiff] = field(default_factory=dict)
    # Only with keep_decisions (tests): (due, customer_id, record) of each decision
    # and conversion, in the reference's order within the chunk.
    decisions: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    outcomes: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)


def run_chunk(job: ChunkJob, lines: list[bytes]) -> ChunkResult:
    """One group of whole customers through the reference (and the baseline)."""
    result = run_reference(lines, job.config, job.rules, until=job.horizon, now=job.now)
    out = ChunkResult(tally=Tally.of(result))
    if job.baseline is not None:
        other = run_reference(lines, job.config, job.baseline, until=job.horizon, now=job.now)
        out.baseline = Tally.of(other)
        out.diff = diff_results(result, other)
    if job.keep_decisions:
        out.decisions = [
            (f.due, f.customer_id, d)
            for (f, _), d in zip(result.firings, result.decisions, strict=True)
        ]
        due = {d["trigger_id"]: due for due, _, d in out.decisions}
        out.outcomes = [(due[o["trigger_id"]], o["customer_id"], o) for o in result.outcomes]
    return out


def _pool_chunk(args: tuple[ChunkJob, list[bytes]]) -> ChunkResult:
    return run_chunk(*args)


def ordered_map(
    pool: ProcessPoolExecutor | None,
    fn: Callable[[T], R],
    items: Iterable[T],
    in_flight: int = 1,
) -> Iterator[tuple[T, R]]:
    """``(item, fn(item))`` in the items' order, computed in ``pool`` (in this process
    without one) with at most ``in_flight`` items submitted and not yet taken: the
    parent holds only those, whatever the number of items."""
    if pool is None:
        for item in items:
            yield item, fn(item)
        return
    pending: deque[tuple[T, Future[R]]] = deque()
    for item in items:
        pending.append((item, pool.submit(fn, item)))
        if len(pending) >= in_flight:
            first, future = pending.popleft()
            yield first, future.result()
    while pending:
        first, future = pending.popleft()
        yield first, future.result()


# --- the whole backtest ------------------------------------------------------------


@dataclass(slots=True)
class BacktestResult:
    """Everything a report is rendered from."""

    rules: RulesFile
    baseline: RulesFile | None
    since: int | None
    until: int | None  # the exclusive end asked for (None: the horizon, inclusive)
    horizon: int | None  # the last instant decisions are due at (None: no valid event)
    tally: Tally
    baseline_tally: Tally | None
    diff: dict[str, RuleDiff]
    # Every rule's step numbers, the file's rules by priority, then the baseline's.
    known_steps: dict[str, tuple[int, ...]]
    workers: int
    chunks: int
    runs: int
    seconds: float
    decisions: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class _Collector:
    result: ChunkResult | None = None
    decisions: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    outcomes: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    chunks: int = 0

    def add(self, part: ChunkResult) -> None:
        self.chunks += 1
        self.decisions += part.decisions
        self.outcomes += part.outcomes
        if self.result is None:
            self.result = part
            return
        self.result.tally.merge(part.tally)
        if part.baseline is not None and self.result.baseline is not None:
            self.result.baseline.merge(part.baseline)
        for rule, diff in part.diff.items():
            self.result.diff.setdefault(rule, RuleDiff()).merge(diff)


def backtest(
    history: str,
    config: Config,
    rules: RulesFile,
    *,
    baseline: RulesFile | None = None,
    since: int | None = None,
    until: int | None = None,
    now: int | None = None,
    workers: int | None = None,
    run_bytes: int = DEFAULT_RUN_BYTES,
    chunk_lines: int = DEFAULT_CHUNK_LINES,
    keep_decisions: bool = False,
    temp_dir: str | None = None,
) -> BacktestResult:
    """Replay ``history`` (a JSONL path, ``-`` for stdin) through ``rules``.

    Decisions due in [since, until) are counted; history before ``since`` is folded
    in as backfill (state, no firing: ``CoreSettings.backfill_until``).  ``until``
    defaults to the latest valid event time, inclusive.  ``now`` is the processor
    clock for the future-timestamp check (default: the wall clock, read once).
    """
    if since is not None and until is not None and until <= since:
        raise BacktestError("--until must be after --since")
    started = time.perf_counter()
    now = time.time_ns() // 1000 if now is None else now
    workers = max(1, workers or os.cpu_count() or 1)
    if since is not None:
        config = replace(config, core=replace(config.core, backfill_until=since))
    bounds = InputBounds.of(config, now)
    in_flight = IN_FLIGHT_PER_WORKER * workers
    collected = _Collector()
    with contextlib.ExitStack() as stack:
        folder = Path(
            stack.enter_context(
                tempfile.TemporaryDirectory(prefix="retention-backtest-", dir=temp_dir)
            )
        )
        pool = stack.enter_context(ProcessPoolExecutor(workers)) if workers > 1 else None
        with _open(history) as source:
            ordered = sort_history(
                source, folder, bounds, run_bytes=run_bytes, pool=pool, in_flight=in_flight
            )
        # [since, until): the reference counts firings due at or before its horizon.
        horizon = until - 1 if until is not None else ordered.latest
        job = ChunkJob(config, rules, baseline, horizon, now, keep_decisions)
        chunks = ((job, lines) for lines in customer_chunks(ordered, chunk_lines))
        for _, part in ordered_map(pool, _pool_chunk, chunks, in_flight):
            collected.add(part)
    known = rule_steps(rules, config)
    for rule, steps in (rule_steps(baseline, config) if baseline is not None else {}).items():
        known.setdefault(rule, steps)
    part = collected.result or ChunkResult(tally=Tally(), baseline=Tally() if baseline else None)
    # The reference's output order, (due, customer, rule order, step): a stable sort
    # keeps each customer's own order, which its chunk computed.
    collected.decisions.sort(key=lambda x: (x[0], x[1]))
    collected.outcomes.sort(key=lambda x: (x[0], x[1]))
    return BacktestResult(
        rules=rules,
        baseline=baseline,
        since=since,
        until=until,
        horizon=horizon,
        tally=part.tally,
        baseline_tally=part.baseline,
        diff=part.diff,
        known_steps=known,
        workers=workers,
        chunks=collected.chunks,
        runs=len(ordered.runs),
        seconds=time.perf_counter() - started,
        decisions=[d for _, _, d in collected.decisions],
        outcomes=[o for _, _, o in collected.outcomes],
    )


def _open(name: str) -> contextlib.AbstractContextManager[IO[bytes]]:
    return contextlib.nullcontext(sys.stdin.buffer) if name == "-" else Path(name).open("rb")
