"""Reading the customer table from outside the worker, through its changelog.

The changelog topic *is* the table (Faust restores a worker's store from it), so
reading it to its end and keeping the newest value per key gives the table state
as of that moment, across every partition and whichever workers own them.  Used by
the live ``retention report`` and by tests that compare the stream with the
offline reference.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaConsumer

from agents.contract import CLOCK_KEY_PREFIX, CUSTOMER_KEY_PREFIX
from agents.core.clock import NEVER, StreamClock
from agents.core.state import CustomerState
from agents.customer import input_sources
from streams.config import Config
from streams.kafka import changelog_topics, client_kwargs
from streams.ops.offsets import end_offsets


@dataclass(slots=True)
class TableSnapshot:
    """The customer table as its changelog holds it."""

    customers: dict[str, CustomerState] = field(default_factory=dict)
    clocks: dict[int, StreamClock] = field(default_factory=dict)
    records: int = 0

    def stream_watermark(self, partitions: int) -> int | None:
        """The time every partition's stream clock has reached (None: some never ran)."""
        marks = [self.clocks[p].watermark() for p in range(partitions) if p in self.clocks]
        if len(marks) < partitions or not marks or min(marks) == NEVER:
            return None
        return min(marks)


async def changelog_batches(config: Config) -> AsyncIterator[list[tuple[bytes, bytes | None]]]:
    """The customer table's changelog from the beginning to its current end, as
    batches of (key, value) records in offset order per partition (None = a tombstone)."""
    topic = changelog_topics(config)[0]
    ends = {tp: end for tp, end in (await end_offsets(config, [topic])).items() if end > 0}
    if not ends:
        return
    consumer = AIOKafkaConsumer(
        **client_kwargs(config), enable_auto_commit=False, isolation_level="read_committed"
    )
    try:
        await consumer.start()
        consumer.assign(list(ends))
        await consumer.seek_to_beginning(*ends)
        remaining = set(ends)
        while remaining:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            yield [
                (r.key, r.value)
                for tp, records in batch.items()
                for r in records
                if r.offset < ends[tp] and r.key is not None
            ]
            # Transaction markers take offsets too: the position tells the end.
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()


async def read_table(config: Config) -> TableSnapshot:
    """Read the customers table's changelog to its current end."""
    latest: dict[bytes, bytes | None] = {}
    snapshot = TableSnapshot()
    async for batch in changelog_batches(config):
        snapshot.records += len(batch)
        latest.update(batch)
    sources = input_sources(config.topics.inputs(), config.partitions)
    lateness = config.core.stream_allowed_lateness
    for raw_key, value in latest.items():
        if value is None:  # a tombstone: the key was deleted
            continue
        key = raw_key.decode()
        if key.startswith(CUSTOMER_KEY_PREFIX):
            state = CustomerState.from_dict(orjson.loads(value))
            snapshot.customers[state.customer_id] = state
        elif key.startswith(CLOCK_KEY_PREFIX):
            partition = int(key[len(CLOCK_KEY_PREFIX) :])
            snapshot.clocks[partition] = StreamClock.restore(sources, lateness, orjson.loads(value))
    return snapshot
