"""The aiokafka internals streams.aiokafka_adapter relies on, checked against the
installed aiokafka: record batches the consumer cannot decode (README "Inputs"), and
a slice's records sent as one record batch per partition (docs/performance.md).

These fail loudly on an aiokafka upgrade that moves or changes them: re-read
aiokafka's fetcher for each name before raising ``PINNED_AIOKAFKA``.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from streams import aiokafka_adapter, faust_adapter


def test_the_installed_aiokafka_is_the_pinned_one() -> None:
    assert aiokafka_adapter.AIOKAFKA_VERSION == aiokafka_adapter.PINNED_AIOKAFKA


def test_check_version_refuses_another_aiokafka(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aiokafka_adapter, "AIOKAFKA_VERSION", "0.15.0")
    # The worker checks both pins at start (streams.faust_adapter.check_version).
    for check_version in (aiokafka_adapter.check_version, faust_adapter.check_version):
        with pytest.raises(RuntimeError, match=r"aiokafka 0\.15\.0"):
            check_version()


def test_aiokafka_builds_partition_records_from_the_two_names_the_guard_replaces() -> None:
    """The fetcher looks both names up in its module when a fetch response arrives,
    decodes a batch only while iterating it, and reads a record through
    ``_consumer_record``: the guard's stand-in must pass there."""
    import aiokafka.consumer.fetcher as fetcher

    fetch = inspect.getsource(fetcher.Fetcher._proc_fetch_request)
    assert "records = MemoryRecords(part_data[-1])" in fetch
    assert "partition_records = PartitionRecords(" in fetch
    unpack = inspect.getsource(fetcher.PartitionRecords._unpack_records)
    assert "next_batch = records.next_batch()" in unpack
    assert "next_batch.validate_crc()" in unpack
    assert "for record in next_batch:" in unpack
    assert "self.next_fetch_offset = next_batch.next_offset" in unpack
    record = inspect.getsource(fetcher.PartitionRecords._consumer_record)
    for attribute in ("offset", "timestamp", "timestamp_type", "key", "value", "checksum"):
        assert f"record.{attribute}" in record


def _batch(base: int, count: int, codec: int = 0) -> bytearray:
    """A v2 record batch of ``count`` JSON values at offsets base.., as a producer sends it."""
    from aiokafka.record.default_records import DefaultRecordBatchBuilder

    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=codec,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for i in range(count):
        builder.append(i, timestamp=1_000 + i, key=None, value=b'{"n":%d}' % (base + i), headers=[])
    data = bytearray(builder.build())
    data[0:8] = base.to_bytes(8, "big")
    return data


def _with_codec(data: bytearray, codec: int) -> bytearray:
    """The batch relabelled as compressed with ``codec``, its CRC made valid again
    (a batch from a producer using a codec this consumer does not know)."""
    from aiokafka.record.util import calc_crc32c

    data = bytearray(data)
    attributes = int.from_bytes(data[21:23], "big")
    data[21:23] = ((attributes & ~7) | codec).to_bytes(2, "big")
    data[17:21] = calc_crc32c(bytes(data[21:])).to_bytes(4, "big")
    return data


def _fetch(topic: str, data: bytes, fetch_offset: int = 0) -> list[Any]:
    """What the consumer hands over from one fetched partition, built the way
    aiokafka's fetcher builds it (CRC checks on, as the worker runs)."""
    import aiokafka.consumer.fetcher as fetcher
    from aiokafka.structs import TopicPartition

    records = fetcher.MemoryRecords(data)
    tp = TopicPartition(topic, 2)
    return list(
        fetcher.PartitionRecords(
            tp, records, None, fetch_offset, None, None, True, fetcher.READ_UNCOMMITTED
        )
    )


@pytest.fixture
def guarded() -> Any:
    registry = aiokafka_adapter.guard_undecodable_batches(["shop.purchases"])
    yield registry
    aiokafka_adapter._GUARDED.pop("shop.purchases", None)


def test_a_batch_with_an_unknown_codec_becomes_one_record_between_the_others(
    guarded: Any,
) -> None:
    bad = _with_codec(_batch(3, 4), 5)
    data = bytes(_batch(0, 3) + bad + _batch(7, 2))
    got = _fetch("shop.purchases", data)
    # Every decodable message is handed over, and the bad batch as one record at
    # its last offset, whose value is the batch's own bytes.
    assert [m.offset for m in got] == [0, 1, 2, 6, 7, 8]
    assert [m.value for m in got if m.offset != 6] == [b'{"n":%d}' % n for n in (0, 1, 2, 7, 8)]
    assert got[3].value == bytes(bad)
    first, last, why = guarded.pop("shop.purchases", 2, 6)
    assert (first, last) == (3, 6)
    assert why.startswith("UnsupportedCodecError") and "0x05" in why
    assert guarded.pop("shop.purchases", 2, 7) is None and len(guarded) == 0


def test_a_batch_whose_crc_or_payload_is_corrupt_becomes_one_record(guarded: Any) -> None:
    crc = _batch(0, 2)
    crc[-1] ^= 0xFF  # a flipped byte: the CRC no longer matches
    gzip = _with_codec(_batch(2, 3), 1)  # labelled gzip, but not gzip inside
    got = _fetch("shop.purchases", bytes(crc + gzip))
    assert [m.offset for m in got] == [1, 4]
    first, last, why = guarded.pop("shop.purchases", 2, 1)
    assert (first, last) == (0, 1) and "CRC" in why
    first, last, _ = guarded.pop("shop.purchases", 2, 4)
    assert (first, last) == (2, 4)


def test_a_corrupt_header_cannot_push_the_range_past_the_next_batch(guarded: Any) -> None:
    bad = _batch(2, 3)
    bad[23:27] = (1_000).to_bytes(4, "big")  # last offset delta 1000, and the CRC breaks
    got = _fetch("shop.purchases", bytes(_batch(0, 2) + bad + _batch(5, 2)))
    # The stand-in ends where the next batch of the fetched data begins, and the
    # messages after it keep their own offsets.
    assert [m.offset for m in got] == [0, 1, 4, 5, 6]
    first, last, why = guarded.pop("shop.purchases", 2, 4)
    assert (first, last) == (2, 4) and "CRC" in why


def test_control_batches_reach_aiokafka_as_they_are(guarded: Any) -> None:
    """Under read_committed aiokafka reads a control batch's marker with ``next()``."""
    import aiokafka.consumer.fetcher as fetcher
    from aiokafka.record.default_records import DefaultRecordBatchBuilder
    from aiokafka.record.util import calc_crc32c
    from aiokafka.structs import TopicPartition

    def transactional(base: int, key: bytes | None, value: bytes | None, control: bool) -> bytes:
        builder = DefaultRecordBatchBuilder(
            magic=2,
            compression_type=0,
            is_transactional=1,
            producer_id=7,
            producer_epoch=0,
            base_sequence=0,
            batch_size=1 << 20,
        )
        builder.append(0, timestamp=1_000, key=key, value=value, headers=[])
        data = bytearray(builder.build())
        data[0:8] = base.to_bytes(8, "big")
        if control:
            data[22] |= 0x20  # the control flag of the attributes
            data[17:21] = calc_crc32c(bytes(data[21:])).to_bytes(4, "big")
        return bytes(data)

    data = transactional(0, None, b'{"n":0}', False) + transactional(
        1, b"\x00\x00\x00\x01", b"\x00\x00\x00\x00\x00\x00", True
    )
    records = fetcher.MemoryRecords(data)
    tp = TopicPartition("shop.purchases", 2)
    partition = fetcher.PartitionRecords(
        tp, records, [], 0, None, None, True, fetcher.READ_COMMITTED
    )
    assert [m.value for m in partition] == [b'{"n":0}']
    assert len(guarded) == 0


def test_a_fetch_from_inside_a_batch_covers_only_the_offsets_not_read(guarded: Any) -> None:
    got = _fetch("shop.purchases", bytes(_with_codec(_batch(10, 5), 5)), fetch_offset=12)
    assert [m.offset for m in got] == [14]
    assert guarded.pop("shop.purchases", 2, 14)[:2] == (12, 14)


def test_v1_message_sets_pass_and_a_corrupt_one_becomes_one_record(guarded: Any) -> None:
    from aiokafka.record.legacy_records import LegacyRecordBatchBuilder

    def message_set(base: int, count: int) -> bytearray:
        builder = LegacyRecordBatchBuilder(magic=1, compression_type=0, batch_size=1 << 20)
        for i in range(count):
            builder.append(base + i, timestamp=1_000, key=None, value=b'{"n":%d}' % (base + i))
        return bytearray(builder.build())

    corrupt = message_set(2, 1)
    corrupt[-1] ^= 0xFF
    got = _fetch("shop.purchases", bytes(message_set(0, 2) + corrupt + message_set(3, 1)))
    assert [(m.offset, m.value) for m in got if m.offset != 2] == [
        (0, b'{"n":0}'),
        (1, b'{"n":1}'),
        (3, b'{"n":3}'),
    ]
    first, last, why = guarded.pop("shop.purchases", 2, 2)
    assert (first, last) == (2, 2) and "CRC" in why
    assert [m.value for m in got if m.offset == 2] == [bytes(corrupt)]


def test_other_topics_still_raise(guarded: Any) -> None:
    from aiokafka.errors import UnsupportedCodecError

    with pytest.raises(UnsupportedCodecError):
        _fetch("shop.customer-events", bytes(_with_codec(_batch(0, 2), 5)))


def test_the_registry_forgets_the_oldest_batches_past_its_limit() -> None:
    registry = aiokafka_adapter.UndecodableBatches(["t"], limit=2)
    for last in (1, 2, 3):
        registry.add("t", 0, aiokafka_adapter.UndecodableBatch(last, last, "x"))
    assert len(registry) == 2
    assert registry.pop("t", 0, 1) is None and registry.pop("t", 0, 3) is not None


# --- BatchSender ------------------------------------------------------------------


def test_batch_sender_picks_partitions_as_the_producers_send_does() -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.producer.message_accumulator import MessageBatch

    # AIOKafkaProducer._partition: the topic's partitions as a list, the available
    # ones, and the configured partitioner; BatchSender asks the same.
    source = inspect.getsource(AIOKafkaProducer._partition)
    assert "all_partitions = list(self._metadata.partitions_for_topic(topic))" in source
    assert "available = list(self._metadata.available_partitions_for_topic(topic))" in source
    assert "return self._partitioner(serialized_key, all_partitions, available)" in source
    assert "await self.client._wait_on_metadata(topic)" in inspect.getsource(
        AIOKafkaProducer.send_batch
    )
    assert list(inspect.signature(AIOKafkaProducer.send_batch).parameters) == [
        "self",
        "batch",
        "topic",
        "partition",
    ]
    # A closed batch does not wait for the producer's linger.
    assert "self._builder.closed()" in inspect.getsource(MessageBatch.remaining_linger)


def test_batch_sender_sends_one_batch_per_partition_in_order_and_splits_full_ones() -> None:
    import asyncio

    from aiokafka.partitioner import DefaultPartitioner

    from tests.fixtures.fake_producer import FakeKafkaProducer

    log: list[tuple[str, bytes | None, bytes, int]] = []

    def record(topic: str, key: bytes | None, value: bytes, partition: int) -> int:
        log.append((topic, key, value, partition))
        return sum(1 for t, _, _, p in log if (t, p) == (topic, partition)) - 1

    # Batches of at most ~1 KB: 40 values of 100 bytes need several per partition.
    producer = FakeKafkaProducer(record, partitions=3, batch_bytes=1024)
    keyed = [("out", f"c{i % 7}".encode(), b"%03d" % i + b"x" * 97, None) for i in range(40)]
    pinned = [("rows", b"k%d" % i, b"v%d" % i, 2) for i in range(5)]
    records: list[aiokafka_adapter.Record] = [*keyed, *pinned]

    async def scenario() -> list[int]:
        batches = await aiokafka_adapter.BatchSender(producer).send(records)
        return [await b.last_offset() for b in batches]

    last = asyncio.run(scenario())
    partitioner = DefaultPartitioner()
    # Every keyed record where the producer's own send would put it, in order per key.
    for topic, key, value, _ in keyed:
        assert (topic, key, value, partitioner(key, [0, 1, 2], [0, 1, 2])) in log
    for key in {k for _, k, _, _ in keyed}:
        got = [v for t, k, v, _ in log if t == "out" and k == key]
        assert got == [v for _, k, v, _ in keyed if k == key]
    assert [(t, k, v, p) for t, k, v, p in log if t == "rows"] == pinned
    # Full batches were split; each batch's last offset is its last record's.
    assert len(producer.batches) > 4
    assert sum(n for _, _, n in producer.batches) == len(records)
    ends: dict[tuple[str, int], int] = {}
    for (topic, partition, count), end in zip(producer.batches, last, strict=True):
        assert end == ends.get((topic, partition), -1) + count
        ends[topic, partition] = end
    assert ends[("rows", 2)] == 4
    assert asyncio.run(aiokafka_adapter.BatchSender(producer).send([])) == []
