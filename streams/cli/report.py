"""retention report: retention numbers and decisions.

Without ``--from-file`` the live report: the customer table read from its
changelog topic (every partition, whichever workers own them), as of the stream
clock every partition has reached (stream mode) or now (wall mode).
``--from-file FILE`` computes the same report offline with the reference
implementation (:mod:`agents.offline.reference`), the numbers the stream is
tested against.  ``--decisions --format json`` prints the offline decisions, one
per line.  The file's ``control/rules`` lines are rules changes applied on top of
the configured rules (docs/rules.md "Changing rules"), as ``retention replay``
sends them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import orjson
from aiokafka.errors import KafkaConnectionError

from agents.core.report_text import render_report
from agents.core.reports import build_report
from agents.offline.reference import compute_decisions
from streams.cli._common import fail
from streams.config import Config, load_config
from streams.feed.history import HistoryError, read_rule_changes
from streams.feed.timeargs import date_or_time
from streams.ops.reporting import (
    PastInstant,
    decisions_json,
    decisions_table,
    live_report,
    offline_score_inputs,
    offline_summary,
    offline_summary_table,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Retention report. With --from-file, computed offline from a JSONL event file by "
        "the reference implementation the stream is tested against."
    )
    parser.add_argument(
        "--from-file",
        metavar="FILE",
        help="JSONL event file ('-' for stdin); without it, the live report (from the tables)",
    )
    parser.add_argument(
        "--until",
        metavar="T",
        help="evaluate decisions due at or before T: RFC 3339, YYYY-MM-DD (00:00 UTC) or "
        "'latest' (default: the latest valid event time in the file)",
    )
    parser.add_argument(
        "--now",
        metavar="T",
        help="the processor clock for the future-timestamp check (default: the wall clock)",
    )
    parser.add_argument(
        "--as-of",
        metavar="T",
        help="report as of T (default: the evaluation horizon; live: the stream clock or now)",
    )
    parser.add_argument(
        "--decisions",
        action="store_true",
        help="print every decision instead of the summary",
    )
    parser.add_argument(
        "--format",
        choices=("json", "table"),
        default="table",
        help="output format (default: table)",
    )


class _ArgumentError(ValueError):
    """A bad command-line value (exit 2)."""


def _time_arg(name: str, text: str | None) -> int | None:
    if text is None or text == "latest":
        return None
    try:
        return date_or_time(text)
    except ValueError as exc:
        raise _ArgumentError(f"{name}: {exc}") from None


@contextmanager
def _open(name: str) -> Iterator[IO[bytes]]:
    if name == "-":
        yield sys.stdin.buffer
        return
    with Path(name).open("rb") as handle:
        yield handle


def _run_live(args: argparse.Namespace, config: Config, as_of: int | None) -> int:
    if args.decisions:
        return fail("--decisions needs --from-file (decisions live on the decisions topic)", 2)
    try:
        data = live_report(config, as_of)
    except KafkaConnectionError as exc:
        return fail(f"cannot reach Kafka at {config.kafka}: {exc}")
    except PastInstant as exc:
        return fail(str(exc), 2)
    if args.format == "json":
        text = orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n"
    else:
        text = (
            f"Retention report (live, from {data['changelog']}, {data['records']:,} records)\n\n"
            + render_report(data["report"])
        )
    return _write(text)


def _write(text: str) -> int:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        pass
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        until = _time_arg("--until", args.until)
        now = _time_arg("--now", args.now)
        as_of = _time_arg("--as-of", args.as_of)
    except _ArgumentError as exc:
        return fail(str(exc), 2)
    config = load_config()
    if not args.from_file:
        return _run_live(args, config, as_of)
    try:
        with _open(args.from_file) as handle:
            lines, changes = read_rule_changes(handle)
        # The configured rules file's text, the document the worker runs
        # (docs/rules.md "Rules file"); None: the default rules and aliases.
        result = compute_decisions(
            lines,
            config,
            rules=config.rules_text,
            until=until,
            now=now,
            changes=[(c.effective_at, c.text) for c in changes],
        )
    except HistoryError as exc:
        return fail(f"{args.from_file}:{exc.line}: {exc.problem}", 2)
    except ValueError as exc:
        # A change the seed refuses (a lifecycle or attribution window change).
        return fail(f"{args.from_file}: {exc}", 2)
    except FileNotFoundError:
        return fail(f"--from-file: no such file: {args.from_file}", 2)
    except OSError as exc:
        return fail(f"cannot read {args.from_file}: {exc.strerror}")
    if args.decisions:
        text = (
            decisions_json(result.decisions)
            if args.format == "json"
            else decisions_table(result.decisions)
        )
    else:
        data = offline_summary(result, config.core, source=args.from_file)
        horizon = as_of if as_of is not None else result.until
        if horizon is not None:
            # The configured rules file's [model], as the live report (docs/prediction.md
            # "Scores"): the buyers' P(alive) at the horizon, from the reference's facts.
            model = config.core.rule_set.model
            data["report"] = build_report(
                result.rows,
                as_of=horizon,
                settings=config.report,
                model=model,
                score_inputs=None if model is None else offline_score_inputs(result, horizon),
            )
        text = (
            orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n"
            if args.format == "json"
            else offline_summary_table(data)
            + ("\n" + render_report(data["report"]) if "report" in data else "")
        )
    return _write(text)
