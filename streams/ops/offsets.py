"""Watching a deployment from outside: offsets, consumer-group progress, topic reads.

Used by the demo, the benchmark and the end-to-end tests, so "the worker has
caught up" means the same thing everywhere: the app's consumer group has
committed every message of the input topics and of the internal topic.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from streams.config import Config
from streams.kafka import client_kwargs


async def end_offsets(config: Config, topics: Iterable[str]) -> dict[TopicPartition, int]:
    names = list(topics)
    consumer = AIOKafkaConsumer(**client_kwargs(config), enable_auto_commit=False)
    try:
        await consumer.start()
        await consumer._client.force_metadata_update()
        tps = [
            TopicPartition(t, p) for t in names for p in (consumer.partitions_for_topic(t) or set())
        ]
        return dict(await consumer.end_offsets(tps)) if tps else {}
    finally:
        await consumer.stop()


async def group_lag(config: Config, topics: Iterable[str] | None = None) -> int | None:
    """Messages of ``topics`` (default: the inputs and the internal topic) not yet
    committed by the app."""
    if topics is None:
        topics = (*config.topics.inputs(), config.topics.customer_events)
    ends = await end_offsets(config, topics)
    admin = AIOKafkaAdminClient(**client_kwargs(config))
    try:
        await admin.start()
        committed = await admin.list_consumer_group_offsets(config.app_id)
    except KafkaError:  # the group coordinator is still starting up
        return None
    finally:
        await admin.close()
    behind: dict[TopicPartition, int] = {}
    for tp, end in ends.items():
        meta = committed.get(tp)
        done = meta.offset if meta is not None and meta.offset >= 0 else 0
        if end > done:
            behind[tp] = done
    if not behind:
        return 0
    return await _records_between(config, behind, ends)


async def _records_between(
    config: Config, start: dict[TopicPartition, int], ends: dict[TopicPartition, int]
) -> int:
    """Count real records in [start, end): with transactions (exactly_once) a
    commit marker takes the last offset of a partition but is never consumed, so
    "committed < end" alone would report lag forever."""
    consumer = AIOKafkaConsumer(
        **client_kwargs(config), enable_auto_commit=False, isolation_level="read_committed"
    )
    count = 0
    try:
        await consumer.start()
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        pending = set(start)
        deadline = time.monotonic() + 10
        while pending and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for tp, records in batch.items():
                count += sum(1 for r in records if r.offset < ends[tp])
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        # Whatever could not be read in time (an open transaction) counts as lag.
        for tp in pending:
            position: int = await consumer.position(tp)
            count += ends[tp] - position
        return count
    finally:
        await consumer.stop()


async def read_all(
    config: Config, topic: str, isolation_level: str = "read_committed"
) -> list[bytes]:
    """Every (committed) message of a topic, from the beginning to its current end."""
    ends = await end_offsets(config, [topic])
    out: list[bytes] = []
    tps = [tp for tp, end in ends.items() if end > 0]
    if not tps:
        # Nothing to read; and aiokafka's consumer stopped right after its start with
        # nothing assigned can raise CancelledError from its coordinator's close.
        return out
    consumer = AIOKafkaConsumer(
        **client_kwargs(config), enable_auto_commit=False, isolation_level=isolation_level
    )
    try:
        await consumer.start()
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        remaining = set(tps)
        while remaining:
            batch = await consumer.getmany(timeout_ms=1000)
            for tp, records in batch.items():
                out.extend(r.value or b"" for r in records if r.offset < ends[tp])
            # Transaction markers occupy offsets too: the position, not the last
            # record, tells when a partition has been read to its end.
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return out
    finally:
        await consumer.stop()
