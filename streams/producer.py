"""Publishing JSONL event files to the input topics (used by produce, replay, bench)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaProducer

from agents.messages import CONTROL_ADVANCE
from streams.config import Config
from streams.kafka import client_kwargs, ensure_topics, partitions_for

SCHEMA_TOPIC = {"purchase/1": "purchases", "session/1": "sessions", "consent/1": "consents"}


@dataclass
class ProduceStats:
    sent: int = 0
    by_topic: dict[str, int] = field(default_factory=dict)
    unroutable: int = 0


def route(config: Config, line: bytes, default_topic: str | None) -> tuple[str, bytes | None]:
    """Topic and key for one line: by its ``schema``; unparsable lines go to the
    default topic (purchases) so the processor dead-letters them visibly."""
    topics = config.topics
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        obj = None
    if default_topic is not None:
        topic = default_topic
    elif isinstance(obj, dict) and obj.get("schema") in SCHEMA_TOPIC:
        topic = getattr(topics, SCHEMA_TOPIC[obj["schema"]])
    else:
        topic = topics.purchases
    key = None
    if isinstance(obj, dict) and isinstance(obj.get("customer_id"), str):
        key = obj["customer_id"].encode()[:256]
    return topic, key


async def produce_lines(
    config: Config,
    lines: Iterable[bytes],
    *,
    topic: str | None = None,
    until: str | None = None,
) -> ProduceStats:
    await ensure_topics(config)
    producer = AIOKafkaProducer(
        **client_kwargs(config),
        linger_ms=20,
        max_batch_size=256 * 1024,
        max_request_size=2 * 1024 * 1024,
        acks="all",
        enable_idempotence=True,
    )
    await producer.start()
    stats = ProduceStats()
    try:
        pending: list[asyncio.Future[object]] = []
        for raw in lines:
            line = raw.rstrip(b"\r\n")
            if not line.strip():
                continue
            t, key = route(config, line, topic)
            pending.append(await producer.send(t, line, key=key))
            stats.sent += 1
            stats.by_topic[t] = stats.by_topic.get(t, 0) + 1
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        if until is not None:
            marker = orjson.dumps({"schema": CONTROL_ADVANCE, "until": until})
            for t in config.topics.inputs():
                for p in await partitions_for(config, t):
                    await producer.send_and_wait(t, marker, partition=p)
    finally:
        await producer.stop()
    return stats
