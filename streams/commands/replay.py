"""retention replay FILE [--until T]: publish events, then advance the stream clock."""

from __future__ import annotations

import argparse
import asyncio

import orjson

from agents.core.timeutil import iso, parse_timestamp, to_micros
from streams.commands._common import fail
from streams.commands.produce import open_lines
from streams.config import load_config
from streams.producer import produce_lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="JSONL file of events ('-' for stdin)")
    parser.add_argument(
        "--until",
        help="RFC 3339 time, or 'latest' (the newest event in the file): after the events, "
        "every partition's stream clock is advanced to it (stream-clock mode)",
    )


def latest_time(lines: list[bytes]) -> str | None:
    best: int | None = None
    for line in lines:
        try:
            obj = orjson.loads(line)
            t = to_micros(parse_timestamp(obj.get("occurred_at")))
        except (orjson.JSONDecodeError, ValueError, AttributeError):
            continue
        best = t if best is None or t > best else best
    return iso(best) if best is not None else None


def run(args: argparse.Namespace) -> int:
    config = load_config()
    try:
        lines = open_lines(args.file)
    except OSError as exc:
        return fail(f"cannot read {args.file}: {exc.strerror}")
    until = args.until
    if until == "latest":
        until = latest_time(lines)
    elif until is not None:
        try:
            until = iso(parse_timestamp(until))
        except ValueError as exc:
            return fail(f"--until: {exc}", 2)
    if until is not None and config.clock != "stream":
        print("note: the worker advances to --until only with RETENTION_CLOCK=stream")
    stats = asyncio.run(produce_lines(config, lines, until=until))
    print(
        f"replayed {stats.sent} messages" + (f"; stream clock advanced to {until}" if until else "")
    )
    return 0
