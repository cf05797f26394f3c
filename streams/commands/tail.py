"""retention tail TOPIC: print a topic as JSONL."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import orjson
from aiokafka import AIOKafkaConsumer

from streams.config import load_config
from streams.kafka import client_kwargs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("topic", help="topic name or short name (nudges, decisions, dlq, ...)")
    parser.add_argument("--from-end", action="store_true", help="only new messages")
    parser.add_argument("--max", type=int, default=0, help="stop after N messages")
    parser.add_argument(
        "--idle", type=float, default=0.0, help="stop after S seconds without messages"
    )


async def tail(args: argparse.Namespace) -> int:
    config = load_config()
    topic = config.topics.resolve(args.topic)
    consumer = AIOKafkaConsumer(
        topic,
        **client_kwargs(config),
        group_id=None,
        auto_offset_reset="latest" if args.from_end else "earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    count = 0
    last = time.monotonic()
    out = sys.stdout.buffer
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for rec in records:
                    value = rec.value or b""
                    try:
                        line = orjson.dumps(orjson.loads(value))
                    except orjson.JSONDecodeError:
                        line = orjson.dumps({"raw": value.decode("utf-8", "replace")})
                    out.write(line + b"\n")
                    count += 1
                    last = time.monotonic()
                    if args.max and count >= args.max:
                        return 0
            out.flush()
            if args.idle and time.monotonic() - last > args.idle:
                return 0
    finally:
        out.flush()
        await consumer.stop()


def run(args: argparse.Namespace) -> int:
    return asyncio.run(tail(args))
