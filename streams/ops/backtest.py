"""`retention rules backtest`: a rules file replayed over a history, on disk and on every core.

docs/rules.md "Backtest" is the user's side.  How it is computed:

1. **Sort pass** (:func:`streams.ops.extsort.sort_history`): the history's non-blank
   lines are keyed by (customer_id, line number) and sorted into runs of at most
   ``run_bytes`` in memory, each written to disk (an external sort, as ``retention
   replay`` sorts by time); a line that is not a JSON object with a string
   ``customer_id`` (or is over the message size limit) goes to a file of its own: it
   can only be a dead letter.  The same pass finds the horizon, the latest
   ``occurred_at`` of a valid line.  The parsing is done in the pool, a block of
   lines a task (:func:`streams.ops.extsort.key_lines`); the parent only sorts and
   writes.
2. **Chunks** (:func:`streams.ops.extsort.customer_chunks`): the runs are merged
   (``heapq.merge``) and cut into groups of whole customers.  Customers are
   independent in the reference (dedup, guardrails and conversions are per
   customer), so each chunk runs through
   :func:`agents.offline.reference.compute_decisions` on its own, in a pool of
   processes, with the same horizon, processor clock and input bounds.
3. **Tally** (:class:`streams.ops.backtest_tally.Tally`): each chunk comes back as
   counts per rule, step, ISO week of the due time and outcome, conversions per
   group, the input counters and (with a baseline) the customers whose nudges
   differ; those add up.

Rules changes in the history (``control/rules`` lines, docs/rules.md "Changing
rules") are read in the sort pass and applied on top of the rules file as the seed,
each from its effective time, in every chunk (the baseline runs without them).

Memory is bounded by the sort runs, the chunks in flight and the tallies, never by
the history.  A dead-letter-only line counts exactly as the reference counts it,
in whichever chunk it lands.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from agents.core.rules import BUILTIN, builtin_text
from agents.core.rules.check import check_rules
from agents.offline.reference import ReferenceResult, compute_decisions
from agents.offline.rulebook import Rulebook, legacy_rulebook, read_rules
from agents.offline.versions import Versions
from streams.config import Config
from streams.feed.history import HistoryError, RulesChange, in_time_order
from streams.ops.backtest_tally import RuleDiff, Tally, diff_results
from streams.ops.extsort import (
    DEFAULT_RUN_BYTES,
    InputBounds,
    customer_chunks,
    ordered_map,
    sort_history,
)

# Lines per chunk handed to a worker (whole customers: a chunk ends at the first
# customer boundary past this).  Small enough that a worker's reference run stays
# a few tens of MiB, large enough that pickling is noise.
DEFAULT_CHUNK_LINES = 20_000
# Chunks submitted and not yet collected, per worker: bounds the parent's memory.
IN_FLIGHT_PER_WORKER = 2
NO_FIRING = "no firing"


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
        # A shipped file by name when no such file is here (docs/lifecycle.md "Rules").
        shipped = path in BUILTIN and not Path(path).exists()
        text = builtin_text(path) if shipped else Path(path).read_text(encoding="utf-8")
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


Changes = tuple[tuple[int, str], ...]  # (effective_at micros, rules text), by time


def rule_changes(
    history: str, found: list[RulesChange], rules: RulesFile, config: Config
) -> Changes:
    """The history's rules changes in time order, checked against the seed
    (:class:`BacktestError` naming the line, or the change the seed refuses)."""
    try:
        ordered = in_time_order(found)
    except HistoryError as exc:
        raise BacktestError(f"{history}:{exc.line}: {exc.problem}") from None
    changes = tuple((c.effective_at, c.text) for c in ordered)
    for c in ordered:
        try:
            Versions.read(_rulebook(rules, config), [(c.effective_at, c.text)])
        except ValueError as exc:
            raise BacktestError(f"{history}:{c.line}: control/rules: {exc}") from None
    return changes


def run_reference(
    lines: Iterable[bytes],
    config: Config,
    rules: RulesFile,
    *,
    until: int | None,
    now: int,
    changes: Changes = (),
) -> ReferenceResult:
    """The one place the rules file reaches the offline reference."""
    return compute_decisions(
        lines, config, rules=rules.document, until=until, now=now, changes=changes
    )


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
    changes: Changes = ()  # the history's rules changes, on top of ``rules``


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
    result = run_reference(
        lines, job.config, job.rules, until=job.horizon, now=job.now, changes=job.changes
    )
    out = ChunkResult(tally=Tally.of(result))
    if job.baseline is not None:
        other = run_reference(lines, job.config, job.baseline, until=job.horizon, now=job.now)
        out.baseline = Tally.of(other)
        out.diff = diff_results(result, other)
    if job.keep_decisions:
        # Sorted later by the instant each was decided: its due time, or the rule
        # change that superseded it (the reference's own order).
        out.decisions = [
            (f.sort_key()[0], f.customer_id, d)
            for (f, _), d in zip(result.firings, result.decisions, strict=True)
        ]
        due = {d["trigger_id"]: due for due, _, d in out.decisions}
        out.outcomes = [(due[o["trigger_id"]], o["customer_id"], o) for o in result.outcomes]
    return out


def _pool_chunk(args: tuple[ChunkJob, list[bytes]]) -> ChunkResult:
    return run_chunk(*args)


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
    # The history's rules changes applied on top of ``rules``, by effective time.
    rule_changes: list[RulesChange] = field(default_factory=list)


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
            try:
                ordered = sort_history(
                    source, folder, bounds, run_bytes=run_bytes, pool=pool, in_flight=in_flight
                )
            except HistoryError as exc:
                raise BacktestError(f"{history}:{exc.line}: {exc.problem}") from None
        # [since, until): the reference counts firings due at or before its horizon.
        horizon = until - 1 if until is not None else ordered.latest
        changes = rule_changes(history, ordered.rule_changes, rules, config)
        job = ChunkJob(config, rules, baseline, horizon, now, keep_decisions, changes)
        chunks = ((job, lines) for lines in customer_chunks(ordered, chunk_lines))
        for _, part in ordered_map(pool, _pool_chunk, chunks, in_flight):
            collected.add(part)
    known = rule_steps(rules, config)
    for text in (text for _, text in changes):
        for r in read_rules(text).rules:
            most = max(len(known.get(r.name, ())), len(r.steps))
            known[r.name] = tuple(range(1, most + 1))
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
        rule_changes=in_time_order(ordered.rule_changes),
    )


def _open(name: str) -> contextlib.AbstractContextManager[IO[bytes]]:
    return contextlib.nullcontext(sys.stdin.buffer) if name == "-" else Path(name).open("rb")
