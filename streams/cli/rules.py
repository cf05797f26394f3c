"""``retention rules ACTION``: rules files (docs/rules.md).

``check FILE``: every problem of FILE, one per line with where it is (exit 1), or
its enabled rules with their versions (exit 0) (docs/rules.md "Checks").
``publish FILE [--effective T] [--dry-run]``: publish a new version to a live
deployment, every partition switching at T of its own stream; refusals exit 2 with
one line each (docs/operations.md "Changing rules live").
``backtest FILE --from-file HISTORY``: what FILE would have done on the history,
per rule, step and ISO week, offline (the reference), on every core, in memory
bounded whatever the history's size (docs/rules.md "Backtest").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tomllib
from pathlib import Path

import orjson
from aiokafka.errors import KafkaError

from agents.core.rules import BUILTIN, RulesError, builtin_text, load_rules
from agents.core.rules.check_window import describe as describe_window
from agents.core.rules.model import Problem
from streams.cli._common import fail
from streams.config import load_config
from streams.feed.timeargs import date_or_time
from streams.ops.backtest import BacktestError, backtest, load_rules_file
from streams.ops.backtest_html import render_html
from streams.ops.backtest_report import document, render_table
from streams.ops.extsort import DEFAULT_RUN_BYTES
from streams.ops.publish import publish
from streams.ops.registry import PublishRefused, RegistryError

FORMATS = ("table", "json", "html")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    _add_check(actions)
    _add_backtest(actions)
    _add_publish(actions)


def run(args: argparse.Namespace) -> int:
    if args.action == "check":
        return _run_check(args)
    if args.action == "publish":
        return _run_publish(args)
    if args.action == "backtest":
        return _run_backtest(args)
    return fail(f"unknown action {args.action}", 2)  # pragma: no cover - argparse refuses it


# --- check -------------------------------------------------------------------------


def _add_check(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = actions.add_parser(
        "check",
        help="every problem of a rules file, or its rules and versions",
        description=(
            "Check a rules file as the worker does before it starts: print every problem, "
            "one per line as FILE:LINE: where: what (exit 1), or each enabled rule with its "
            "priority, steps and rule_version (exit 0). Exit 2: FILE cannot be read or is "
            "not TOML."
        ),
    )
    p.add_argument("file", metavar="FILE", help="the rules file (TOML)")


def _located(path: str, problem: Problem) -> str:
    where = f"{path}:{problem.line}" if problem.line is not None else path
    return f"{where}: {problem.path}: {problem.message}"


def _run_check(args: argparse.Namespace) -> int:
    path = args.file
    try:
        # A shipped file by name when no such file is here (docs/lifecycle.md "Rules").
        shipped = path in BUILTIN and not Path(path).exists()
        text = builtin_text(path) if shipped else Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return fail(f"no such rules file: {path}", 2)
    except (OSError, UnicodeDecodeError) as exc:
        return fail(f"cannot read the rules file {path}: {exc}", 2)
    try:
        rules = load_rules(text)
    except RulesError as exc:
        for problem in exc.problems:
            print(_located(path, problem))
        count = len(exc.problems)
        print(f"retention: {path}: {count} problem{'s' if count != 1 else ''}", file=sys.stderr)
        try:
            tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            return 2  # not TOML at all: a bad argument, as for backtest
        return 1
    disabled = [r.name for r in rules.rules if not r.enabled]
    print(
        f"{path}: ok, {len(rules.active)} enabled rule{'s' if len(rules.active) != 1 else ''}"
        + (f" ({len(disabled)} disabled: {', '.join(disabled)})" if disabled else "")
    )
    width = max((len(r.name) for r in rules.active), default=0)
    windowed = any(r.send_window is not None for r in rules.active)
    for rule in rules.active:
        flags = "  transactional" if rule.transactional else ""
        flags += "  arbitration" if rule.arbitration else ""
        steps = ", ".join(step.label() for step in rule.steps)
        print(
            f"  {rule.name:<{width}}  priority {rule.priority:>3}  rule_version {rule.version}"
            f"  steps {steps}{flags}"
        )
        # Only in a file with a window somewhere, so today's files print as before.
        if windowed:
            shown = (
                "none (sent at the due time)"
                if rule.send_window is None
                else describe_window(rule.send_window)
            )
            print(f"  {'':<{width}}  window: {shown}")
    return 0


# --- backtest ----------------------------------------------------------------------


def _add_backtest(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = actions.add_parser(
        "backtest",
        help="what a rules file would have done on a history (offline)",
        description=(
            "Replay a JSONL history offline through a rules file and report, per rule, step "
            "and ISO week of the due time: firings, delivered, suppressed by reason, holdout, "
            "conversions and lift. With --baseline, which customers would newly get or no "
            "longer get a nudge. Sorts the history on disk by customer and uses every core."
        ),
    )
    p.add_argument("file", metavar="FILE", help="the rules file (TOML)")
    p.add_argument(
        "--from-file",
        metavar="HISTORY",
        required=True,
        help="JSONL event history ('-' for stdin)",
    )
    p.add_argument("--baseline", metavar="OTHER", help="a second rules file to compare with")
    p.add_argument(
        "--since",
        metavar="T",
        help="count decisions due at or after T; the history before it is folded in as "
        "backfill (state, no firing). RFC 3339 or YYYY-MM-DD (00:00 UTC)",
    )
    p.add_argument(
        "--until",
        metavar="T",
        help="count decisions due before T (default: up to the latest valid event time, inclusive)",
    )
    p.add_argument("--format", choices=FORMATS, default="table", help="default: table")
    p.add_argument(
        "--out",
        metavar="PATH",
        help="write the report to PATH instead of stdout (required for --format html)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        metavar="N",
        help=f"processes replaying customers in parallel (default: {os.cpu_count() or 1}, "
        "the cores)",
    )
    p.add_argument(
        "--sort-memory",
        type=int,
        default=DEFAULT_RUN_BYTES // 2**20,
        metavar="MIB",
        help="memory for each sorted run before it goes to disk (default: "
        f"{DEFAULT_RUN_BYTES // 2**20})",
    )


def _time(name: str, text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return date_or_time(text)
    except ValueError as exc:
        raise BacktestError(f"{name}: {exc}") from None


def _run_backtest(args: argparse.Namespace) -> int:
    if args.format == "html" and not args.out:
        return fail("--format html writes a page: give it --out PATH", 2)
    if args.workers < 1 or args.sort_memory < 1:
        return fail("--workers and --sort-memory must be at least 1", 2)
    if args.from_file != "-" and not Path(args.from_file).is_file():
        return fail(f"--from-file: no such file: {args.from_file}", 2)
    try:
        since = _time("--since", args.since)
        until = _time("--until", args.until)
        rules = load_rules_file(args.file)
        baseline = load_rules_file(args.baseline) if args.baseline else None
        result = backtest(
            args.from_file,
            load_config(),
            rules,
            baseline=baseline,
            since=since,
            until=until,
            workers=args.workers,
            run_bytes=args.sort_memory * 2**20,
        )
    except BacktestError as exc:
        return fail(str(exc), 2)
    except OSError as exc:
        return fail(f"cannot read {args.from_file}: {exc.strerror}")
    doc = document(result, history=args.from_file)
    if args.format == "json":
        text = orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n"
    elif args.format == "html":
        text = render_html(doc)
    else:
        text = render_table(doc)
    if args.out:
        try:
            Path(args.out).write_text(text, encoding="utf-8")
        except OSError as exc:
            return fail(f"cannot write {args.out}: {exc.strerror}")
        print(f"retention: wrote {args.out}", file=sys.stderr)
        return 0
    sys.stdout.write(text)
    sys.stdout.flush()
    return 0


# --- publish -----------------------------------------------------------------------


def _add_publish(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = actions.add_parser(
        "publish",
        help="publish a new version of the rules to the running deployment",
        description=(
            "Check FILE against the published seed, then write it to the rules topic and "
            "send its control/rules marker to every input partition: every customer "
            "partition switches at T of its own stream. Refusals exit 2, one line each "
            '(docs/operations.md "Changing rules live").'
        ),
    )
    p.add_argument("file", metavar="FILE", help="the rules file (TOML)")
    p.add_argument(
        "--effective",
        metavar="T",
        help="the event time the version takes effect (RFC 3339 or YYYY-MM-DD); wall "
        "clock mode: default now + RETENTION_RULES_LEAD; stream mode: required",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="say per rule how many customers are mid-ladder and what the change does "
        "to them (from the live table); publish nothing",
    )


def _run_publish(args: argparse.Namespace) -> int:
    path = args.file
    try:
        # A shipped file by name when no such file is here (docs/lifecycle.md "Rules").
        shipped = path in BUILTIN and not Path(path).exists()
        text = builtin_text(path) if shipped else Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return fail(f"no such rules file: {path}", 2)
    except (OSError, UnicodeDecodeError) as exc:
        return fail(f"cannot read the rules file {path}: {exc}", 2)
    try:
        load_rules(text)
    except RulesError as exc:
        for problem in exc.problems:
            fail(_located(path, problem), 2)
        return fail(f"{path}: not published; run retention rules check {path}", 2)
    try:
        effective = None if args.effective is None else date_or_time(args.effective)
    except ValueError as exc:
        return fail(f"--effective: {exc}", 2)
    config = load_config()
    try:
        lines = asyncio.run(publish(config, path, text, effective, dry_run=args.dry_run))
    except PublishRefused as exc:
        for line in exc.lines:
            fail(f"{path}: {line}", 2)
        return 2
    except RegistryError as exc:
        return fail(f"the rules topic {config.topics.rules} holds a bad record: {exc}", 1)
    except (KafkaError, OSError) as exc:
        return fail(f"cannot reach Kafka at {config.kafka}: {exc}", 1)
    for line in lines:
        print(line)
    return 0
