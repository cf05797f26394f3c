"""retention produce FILE: publish a JSONL file of events to the input topics."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from streams.cli._common import fail
from streams.config import load_config
from streams.feed.producer import produce_lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="JSONL file, one event object per line ('-' for stdin)")
    parser.add_argument(
        "--topic", help="send every line to this topic instead of routing by 'schema'"
    )


def open_lines(name: str) -> list[bytes]:
    if name == "-":
        return sys.stdin.buffer.read().splitlines()
    return Path(name).read_bytes().splitlines()


def run(args: argparse.Namespace) -> int:
    config = load_config()
    try:
        lines = open_lines(args.file)
    except OSError as exc:
        return fail(f"cannot read {args.file}: {exc.strerror}")
    topic = config.topics.resolve(args.topic) if args.topic else None
    stats = asyncio.run(produce_lines(config, lines, topic=topic))
    parts = ", ".join(f"{t}={n}" for t, n in sorted(stats.by_topic.items()))
    print(f"produced {stats.sent} messages to {config.kafka} ({parts})")
    return 0
