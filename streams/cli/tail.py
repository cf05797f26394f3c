"""retention tail TOPIC: print a topic as JSONL."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import fields

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.cli._common import fail
from streams.config import Topics, load_config
from streams.kafka import client_kwargs


class MissingTopic(LookupError):
    """The topic does not exist (a mistyped name must not create it)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("topic", help="topic name or short name (nudges, decisions, dlq, ...)")
    parser.add_argument("--from-end", action="store_true", help="only new messages")
    parser.add_argument("--max", type=int, default=0, help="stop after N messages")
    parser.add_argument(
        "--idle", type=float, default=0.0, help="stop after S seconds without messages"
    )


async def _assign(consumer: AIOKafkaConsumer, topic: str) -> None:
    # Subscribing would ask the broker for the topic's metadata, and a broker with
    # auto.create.topics.enable (Kafka's default) then creates it: a typo would
    # leave a new empty topic behind. The list of all topics creates nothing.
    if topic not in await consumer.topics():
        raise MissingTopic(topic)
    partitions = sorted(consumer.partitions_for_topic(topic) or ())
    consumer.assign([TopicPartition(topic, p) for p in partitions])


async def tail(args: argparse.Namespace) -> int:
    config = load_config()
    topic = config.topics.resolve(args.topic)
    consumer = AIOKafkaConsumer(
        **client_kwargs(config),
        group_id=None,
        auto_offset_reset="latest" if args.from_end else "earliest",
        enable_auto_commit=False,
    )
    count = 0
    last = time.monotonic()
    out = sys.stdout.buffer
    try:
        await consumer.start()
        try:
            await _assign(consumer, topic)
        except MissingTopic:
            return fail(f"topic {topic} does not exist (short names: {_short_names()})")
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
                        out.flush()
                        return 0
            out.flush()
            if args.idle and time.monotonic() - last > args.idle:
                return 0
    finally:
        await consumer.stop()


def _short_names() -> str:
    return ", ".join(f.name.replace("_", "-") for f in fields(Topics))


def run(args: argparse.Namespace) -> int:
    return asyncio.run(tail(args))
