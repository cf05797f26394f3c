"""retention replay FILE [--until T]: publish a history in event-time order, with the
stream clock following it, then advance every clock to T.

The file may be in any order (by customer, shuffled, reversed): it is sorted by
``occurred_at`` in bounded memory first (:mod:`streams.feed.history`), so the
decisions are those of ``retention report --from-file FILE --decisions --until T``.
Its ``control/rules`` lines (rules changes, docs/rules.md "Changing rules") go to
every input partition, each before the events dated at or after its time.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from contextlib import ExitStack

from agents.core.clock import clock_mode
from agents.core.timeutil import iso, parse_timestamp, to_micros
from streams.cli._common import fail
from streams.config import load_config
from streams.feed.history import DEFAULT_RUN_BYTES, HistoryError, sort_history
from streams.feed.producer import replay_history

MIB = 1024 * 1024


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Publish a JSONL history in event-time order, whatever the order of the file "
        "(it is sorted on disk in bounded memory), advancing the stream clock as event "
        "time passes; then advance every partition's clock to --until."
    )
    parser.add_argument("file", help="JSONL file of events ('-' for stdin)")
    parser.add_argument(
        "--until",
        help="RFC 3339 time, or 'latest' (the newest event in the file): events dated "
        "after it are not sent, and every partition's stream clock is advanced to it at "
        "the end (stream-clock mode)",
    )
    parser.add_argument(
        "--sort-memory",
        type=int,
        default=DEFAULT_RUN_BYTES // MIB,
        metavar="MIB",
        help="memory for each sorted run before it is spilled to a temporary file "
        f"(default {DEFAULT_RUN_BYTES // MIB})",
    )
    parser.add_argument(
        "--tmpdir", help="directory for the sort's temporary files (default: the system's)"
    )


def run(args: argparse.Namespace) -> int:
    config = load_config()
    until: int | None = None
    if args.until is not None and args.until != "latest":
        try:
            until = to_micros(parse_timestamp(args.until))
        except ValueError as exc:
            return fail(f"--until: {exc}", 2)
    if args.sort_memory < 1:
        return fail("--sort-memory must be at least 1 (MiB)", 2)
    if args.until is not None and not clock_mode(config.clock).event_time:
        print("note: the worker advances to --until only with RETENTION_CLOCK=stream")
    with ExitStack() as stack:
        try:
            source = (
                sys.stdin.buffer if args.file == "-" else stack.enter_context(open(args.file, "rb"))
            )
            history = stack.enter_context(
                sort_history(
                    source,
                    run_bytes=args.sort_memory * MIB,
                    tmpdir=args.tmpdir,
                )
            )
        except OSError as exc:
            return fail(f"cannot read {args.file}: {exc.strerror}")
        except HistoryError as exc:
            return fail(f"{args.file}:{exc.line}: {exc.problem}", 2)
        if args.until == "latest":
            until = history.stats.latest
        step = config.core.stream_allowed_lateness
        stats = asyncio.run(replay_history(config, history, until=until, step=step))
    sort = history.stats
    parts = [f"replayed {stats.sent} messages in event-time order"]
    if sort.runs:
        parts.append(f"sorted in {sort.runs} runs on disk")
    if sort.untimed:
        parts.append(f"{sort.untimed} lines without a usable occurred_at sent first")
    if stats.held_back:
        parts.append(f"{stats.held_back} events dated after --until not sent")
    if stats.rules:
        parts.append(f"{stats.rules} rules changes sent to every input partition")
    if sort.controls_dropped:
        parts.append(f"{sort.controls_dropped} control/advance lines of the file dropped")
    if until is not None:
        parts.append(f"stream clock advanced to {iso(until)}")
    print("; ".join(parts))
    return 0
