"""streams.aiokafka_adapter.BatchSender against the session's real broker: a slice's
records as one record batch per partition (docs/performance.md) land where the
producer's own keyed ``send`` puts them, in order, compressed as configured."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord

from streams.aiokafka_adapter import BatchSender, Record
from streams.local.stack import StackInfo
from tests.fixtures.kafka import create_topics, read_topic

pytestmark = pytest.mark.integration


async def test_batched_records_land_where_keyed_sends_do_in_order(
    local_stack: StackInfo, unique_prefix: str
) -> None:
    batched, reference = unique_prefix + "batched", unique_prefix + "reference"
    await create_topics(local_stack.kafka, [batched, reference], partitions=3)
    # Small batches (several per partition) and a codec, as a deployment may set.
    producer = AIOKafkaProducer(
        bootstrap_servers=local_stack.kafka, max_batch_size=1024, compression_type="gzip"
    )
    await producer.start()
    try:
        values = [(f"customer-{i % 7}".encode(), b"%03d:" % i + b"y" * 96) for i in range(60)]
        records: list[Record] = [(batched, k, v, None) for k, v in values]
        sent = await BatchSender(producer).send(records)
        ends = await asyncio.gather(*(b.last_offset() for b in sent))
        acks = [await producer.send(reference, v, key=k) for k, v in values]
        await asyncio.gather(*acks)
    finally:
        await producer.stop()

    got = await read_topic(local_stack.kafka, batched, until=lambda r: len(r) >= len(values))
    want = await read_topic(local_stack.kafka, reference, until=lambda r: len(r) >= len(values))
    assert len(got) == len(want) == len(values)
    assert len(sent) > 3  # more than one batch per partition: full ones were split

    def by_partition(
        rs: list[ConsumerRecord[bytes, bytes]],
    ) -> dict[int, list[tuple[bytes | None, bytes]]]:
        out: dict[int, list[tuple[bytes | None, bytes]]] = {}
        for r in sorted(rs, key=lambda r: (r.partition, r.offset)):
            out.setdefault(r.partition, []).append((r.key, r.value))
        return out

    # Same partition for every key, same order within each partition.
    assert by_partition(got) == by_partition(want)
    # Each partition's last batch ends at that partition's last record.
    highest = {
        p: max(r.offset for r in got if r.partition == p) for p in {r.partition for r in got}
    }
    assert {b_end for b_end in ends} >= set(highest.values())
    assert max(ends) == max(highest.values())
