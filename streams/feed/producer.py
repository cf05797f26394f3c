"""Publishing JSONL event files to the input topics (used by produce, replay, bench, demo)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaProducer

from agents.core.timeutil import iso
from agents.messages import CONTROL_ADVANCE
from streams.config import Config
from streams.feed.history import SortedHistory
from streams.kafka import client_kwargs, ensure_topics, partitions_for

# Each input contract's topic (README "Topics and schemas"; Topics field names).
SCHEMA_TOPIC = {
    "purchase/1": "purchases",
    "purchase/2": "purchases",
    "session/1": "sessions",
    "consent/1": "consents",
    "signup/1": "signups",
    "product_view/1": "product_views",
    "cart/1": "carts",
    "order_cancelled/1": "order_cancellations",
}


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


def _producer(config: Config) -> AIOKafkaProducer:
    # Idempotent with acks=all: a retried batch is never written twice, and the
    # records sent to one partition keep their order - which the replay's clock
    # markers rely on (a marker must come after the events sent before it).
    return AIOKafkaProducer(
        **client_kwargs(config),
        linger_ms=20,
        max_batch_size=256 * 1024,
        max_request_size=2 * 1024 * 1024,
        acks="all",
        enable_idempotence=True,
    )


class _Sender:
    """Sends without waiting for each record, in bounded batches of outstanding ones."""

    def __init__(self, producer: AIOKafkaProducer, stats: ProduceStats) -> None:
        self.producer = producer
        self.stats = stats
        self.pending: list[asyncio.Future[object]] = []

    async def send(
        self, topic: str, value: bytes, *, key: bytes | None = None, partition: int | None = None
    ) -> None:
        self.pending.append(await self.producer.send(topic, value, key=key, partition=partition))
        if len(self.pending) >= 5000:
            await self.flush()

    async def event(self, config: Config, line: bytes, topic: str | None = None) -> None:
        t, key = route(config, line, topic)
        await self.send(t, line, key=key)
        self.stats.sent += 1
        self.stats.by_topic[t] = self.stats.by_topic.get(t, 0) + 1

    async def flush(self) -> None:
        await asyncio.gather(*self.pending)
        self.pending.clear()


def advance_marker(until: str) -> bytes:
    return orjson.dumps({"schema": CONTROL_ADVANCE, "until": until})


async def input_partitions(config: Config) -> list[tuple[str, int]]:
    return [(t, p) for t in config.topics.inputs() for p in await partitions_for(config, t)]


async def produce_lines(
    config: Config,
    lines: Iterable[bytes],
    *,
    topic: str | None = None,
    until: str | None = None,
) -> ProduceStats:
    """Publish lines in the order given; then, with ``until``, advance every clock to it."""
    await ensure_topics(config)
    producer = _producer(config)
    stats = ProduceStats()
    try:
        await producer.start()
        sender = _Sender(producer, stats)
        for raw in lines:
            line = raw.rstrip(b"\r\n")
            if not line.strip():
                continue
            await sender.event(config, line, topic)
        await sender.flush()
        if until is not None:
            marker = advance_marker(until)
            for t, p in await input_partitions(config):
                await producer.send_and_wait(t, marker, partition=p)
    finally:
        await producer.stop()
    return stats


@dataclass
class ReplayStats(ProduceStats):
    markers: int = 0  # control/advance rounds, each sent to every input partition
    rules: int = 0  # control/rules records of the file, each sent to every input partition
    held_back: int = 0  # events dated after ``until``: not sent


def replay_plan(
    history: SortedHistory,
    stats: ReplayStats,
    *,
    until: int | None,
    step: int,
    earliest: int | None = None,
) -> Iterator[tuple[bytes | None, int | None]]:
    """What the replay sends, in order: ``(line, None)`` for an event line,
    ``(None, T)`` for a ``control/advance`` to T on every input partition,
    ``(record, T)`` for the file's ``control/rules`` record effective at T, on every
    input partition.

    The lines without a usable time go first (they only become dead letters).
    Then the events in time order; whenever event time has moved ``step`` past the
    last marker, a marker to just before the next event (``t - 1``): every event
    sent after a marker is dated after it, so none is late, and the clock keeps up
    even on partitions that see few events.  Events dated after ``until`` are held
    back (``report --from-file --until T`` leaves them out too); the last marker is
    ``until``.  No marker goes before ``earliest`` (the earliest accepted event
    time): the events there are dead letters, and so would such a marker be.

    A rules change effective at T goes before every event dated at or after T and
    before any clock marker at or past T, so every partition's clock is still below
    T when it learns of the change and switches exactly at T (docs/rules.md
    "Changing rules"); the changes after the last event go at the end, before the
    final marker.
    """
    if step < 1:
        raise ValueError("step must be positive")
    for line in history.untimed():
        yield line, None
    changes = list(history.rule_changes)

    def rules_due(t: int | None) -> Iterator[tuple[bytes | None, int | None]]:
        while changes and (t is None or changes[0].effective_at <= t):
            change = changes.pop(0)
            stats.rules += 1
            yield change.record(), change.effective_at

    marked: int | None = None
    for t, line in history.timed():
        if until is not None and t > until:
            stats.held_back += 1
            continue
        yield from rules_due(t)
        if marked is None:
            marked = t - 1
        elif t - 1 - marked >= step:
            marked = t - 1
            if earliest is None or marked >= earliest:
                stats.markers += 1
                yield None, marked
        yield line, None
    yield from rules_due(None)
    if until is not None:
        stats.markers += 1
        yield None, until


async def replay_history(
    config: Config, history: SortedHistory, *, until: int | None, step: int
) -> ReplayStats:
    """Publish a sorted history so the stream clock follows the file's time
    (:func:`replay_plan`)."""
    stats = ReplayStats()
    plan = replay_plan(history, stats, until=until, step=step, earliest=config.min_event_time)
    await ensure_topics(config)
    partitions = await input_partitions(config)
    producer = _producer(config)
    try:
        await producer.start()
        sender = _Sender(producer, stats)
        for line, marker_at in plan:
            if line is not None and marker_at is None:
                await sender.event(config, line)
                continue
            assert marker_at is not None
            # A rules change, or a clock marker: to every input partition.
            marker = line if line is not None else advance_marker(iso(marker_at))
            for topic, p in partitions:
                await sender.send(topic, marker, partition=p)
        await sender.flush()
    finally:
        await producer.stop()
    return stats
