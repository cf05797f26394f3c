"""The session's real Kafka broker: plain JSON round trips and transactions."""

from __future__ import annotations

import orjson
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord

from streams.local.stack import StackInfo
from tests.fixtures.kafka import create_topics, produce_json, read_topic

pytestmark = pytest.mark.integration


async def test_json_events_round_trip_and_keys_stay_on_one_partition(
    local_stack: StackInfo, unique_prefix: str
) -> None:
    topic = unique_prefix + "events"
    await create_topics(local_stack.kafka, [topic], partitions=3)
    sent = [(f"c{i % 5}", {"customer_id": f"c{i % 5}", "seq": i}) for i in range(30)]
    await produce_json(local_stack.kafka, topic, sent)

    records = await read_topic(local_stack.kafka, topic, until=lambda r: len(r) >= len(sent))

    assert len(records) == len(sent)
    got = sorted((r.key.decode(), orjson.loads(r.value)["seq"]) for r in records if r.key)
    assert got == sorted((k, v["seq"]) for k, v in sent)
    partitions_by_key: dict[bytes | None, set[int]] = {}
    for r in records:
        partitions_by_key.setdefault(r.key, set()).add(r.partition)
    assert all(len(p) == 1 for p in partitions_by_key.values())
    # per key, order is kept
    for key in partitions_by_key:
        seqs = [orjson.loads(r.value)["seq"] for r in records if r.key == key]
        assert seqs == sorted(seqs)


async def test_committed_transaction_becomes_visible_to_read_committed_only_on_commit(
    local_stack: StackInfo, unique_prefix: str
) -> None:
    topic = unique_prefix + "tx-commit"
    await create_topics(local_stack.kafka, [topic])
    producer = AIOKafkaProducer(
        bootstrap_servers=local_stack.kafka, transactional_id=unique_prefix + "producer"
    )
    await producer.start()
    try:
        await producer.begin_transaction()
        for i in range(5):
            await producer.send_and_wait(topic, value=orjson.dumps({"i": i}))
        # Open transaction: a read_committed consumer must not see anything yet.
        with pytest.raises(TimeoutError):
            await read_topic(
                local_stack.kafka,
                topic,
                until=lambda r: len(r) > 0,
                timeout=1.5,
                isolation_level="read_committed",
            )
        await producer.commit_transaction()
    finally:
        await producer.stop()

    records = await read_topic(
        local_stack.kafka, topic, until=lambda r: len(r) >= 5, isolation_level="read_committed"
    )
    assert [orjson.loads(r.value)["i"] for r in records] == [0, 1, 2, 3, 4]


async def test_aborted_transaction_is_hidden_from_read_committed_consumers(
    local_stack: StackInfo, unique_prefix: str
) -> None:
    topic = unique_prefix + "tx-abort"
    await create_topics(local_stack.kafka, [topic])
    producer = AIOKafkaProducer(
        bootstrap_servers=local_stack.kafka, transactional_id=unique_prefix + "producer"
    )
    await producer.start()
    try:
        await producer.begin_transaction()
        await producer.send_and_wait(topic, value=orjson.dumps({"state": "aborted", "i": 1}))
        await producer.send_and_wait(topic, value=orjson.dumps({"state": "aborted", "i": 2}))
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send(topic, value=orjson.dumps({"state": "committed", "i": 3}))
    finally:
        await producer.stop()

    def saw_committed(records: list[ConsumerRecord[bytes, bytes]]) -> bool:
        return any(orjson.loads(r.value)["state"] == "committed" for r in records)

    committed_view = await read_topic(
        local_stack.kafka, topic, until=saw_committed, isolation_level="read_committed"
    )
    uncommitted_view = await read_topic(
        local_stack.kafka, topic, until=saw_committed, isolation_level="read_uncommitted"
    )

    assert [orjson.loads(r.value)["i"] for r in committed_view] == [3]
    assert [orjson.loads(r.value)["i"] for r in uncommitted_view] == [1, 2, 3]
