"""Every use of aiokafka internals, in one place, pinned to the aiokafka version below.

The worker needs two things aiokafka does not offer as public API: **a record batch
the consumer cannot decode, handed over as one record**
(:func:`guard_undecodable_batches`), and **a slice's records sent as one record
batch per partition** (:class:`BatchSender`: the keyed partition choice of
``AIOKafkaProducer.send``, applied to ``create_batch``/``send_batch``).

aiokafka raises from its fetcher when a batch of an input topic is compressed with a
codec it cannot load, or its CRC or records are corrupt, before any agent sees a
message; the worker crashed, and crashed again after every restart since the batch
was never committed.  The guard
turns such a batch into one record at the batch's last offset that ingest makes a
dead letter (README "Inputs").  It patches two names of aiokafka's fetcher module
(``MemoryRecords``, ``PartitionRecords``); Faust's own internals are fenced in
:mod:`streams.faust_adapter`, which also refuses an aiokafka other than the pinned one
(:func:`check_version`).

``tests/unit/streams/test_aiokafka_adapter.py`` checks these internals against the
installed aiokafka and fails loudly on an upgrade: re-read aiokafka's fetcher and
producer for these names before raising :data:`PINNED_AIOKAFKA`.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Collection, Iterable, Iterator
from importlib.metadata import version
from typing import Any, NamedTuple

log = logging.getLogger(__name__)

# The fetcher internals the undecodable-batch guard relies on (aiokafka.consumer.fetcher).
PINNED_AIOKAFKA = "0.14.0"
AIOKAFKA_VERSION = version("aiokafka")


def check_version() -> None:
    """Refuse to run on an aiokafka whose fetcher internals were not checked."""
    if AIOKAFKA_VERSION != PINNED_AIOKAFKA:
        raise RuntimeError(
            f"aiokafka {AIOKAFKA_VERSION} is installed; streams.aiokafka_adapter was "
            f"written against {PINNED_AIOKAFKA}. Re-check the fetcher internals it "
            "patches and update PINNED_AIOKAFKA (constraints.txt pins the tested version)."
        )


# --- record batches the consumer cannot decode ----------------------------------------
#
# aiokafka decodes a fetched partition's record batches lazily, in
# ``PartitionRecords._unpack_records``: a batch compressed with a codec whose
# library is missing (UnsupportedCodecError), a CRC mismatch
# (CorruptRecordException) or a payload the codec cannot read raises there, out
# of ``Consumer.getmany``, and Faust's consumer service crashes.  The batch is
# never committed, so a restart fetches it again and crashes again: one message a
# producer sent stops the pipeline for good.  The guard hands such a batch of an
# input topic over as one record at the batch's last offset, whose value is the
# batch's raw bytes; ingest turns it into one ``undecodable_batch`` dead letter
# and its ack moves the committed offset past the batch (the offsets before it in
# the batch are a gap to Faust, ``Consumer._add_gap``, which commits treat as
# read).  Other topics (the internal topic, changelogs) are left to raise: only
# this worker writes them.


class UndecodableBatch(NamedTuple):
    """A record batch that could not be decoded: its first offset not yet read,
    its last offset (where its stand-in record sits) and why."""

    first_offset: int
    last_offset: int
    error: str


class UndecodableBatches:
    """The undecodable batches of the guarded topics, fetched and not yet handed
    to ingest, by (topic, partition, last offset).

    A fetch dropped by a rebalance leaves its entry behind; the oldest go first
    once ``limit`` are held (a batch fetched again is registered again).
    """

    def __init__(self, topics: Collection[str], limit: int = 1024) -> None:
        self.topics = frozenset(topics)
        self.limit = limit
        self._held: OrderedDict[tuple[str, int, int], UndecodableBatch] = OrderedDict()

    def __len__(self) -> int:
        return len(self._held)

    def add(self, topic: str, partition: int, batch: UndecodableBatch) -> None:
        self._held[(topic, partition, batch.last_offset)] = batch
        while len(self._held) > self.limit:
            self._held.popitem(last=False)

    def pop(self, topic: str, partition: int, offset: int) -> UndecodableBatch | None:
        """The batch whose stand-in record is at this position (None: a real record)."""
        return self._held.pop((topic, partition, offset), None)


# Topic -> the registry of the app that guards it (one process may build several apps).
_GUARDED: dict[str, UndecodableBatches] = {}


def guard_undecodable_batches(topics: Collection[str]) -> UndecodableBatches:
    """Hand undecodable record batches of ``topics`` over as stand-in records
    (see the section comment); returns the registry ingest asks about them."""
    registry = UndecodableBatches(topics)
    for topic in topics:
        _GUARDED[topic] = registry
    _patch_fetcher()
    return registry


def _patch_fetcher() -> None:
    import aiokafka.consumer.fetcher as fetcher

    if getattr(fetcher.PartitionRecords, "_retention_guard", False):
        return
    fetcher.MemoryRecords = _raw_memory_records(fetcher.MemoryRecords)
    fetcher.PartitionRecords = _guarded_partition_records(fetcher.PartitionRecords)


def _raw_memory_records(base: Any) -> Any:
    """aiokafka's MemoryRecords (C or Python), keeping the fetched bytes so that an
    undecodable batch's own bytes can go into its dead letter."""

    class RawMemoryRecords:
        __slots__ = ("_data", "_guard", "_inner")

        def __init__(self, data: bytes) -> None:
            self._data = data
            self._inner = base(data)
            self._guard: _BatchGuard | None = None

        def has_next(self) -> bool:
            return bool(self._inner.has_next())

        def size_in_bytes(self) -> int:
            return int(self._inner.size_in_bytes())

        def next_batch(self) -> Any:
            batch = self._inner.next_batch()
            guard = self._guard
            if guard is None or batch is None or batch.is_control_batch:
                # aiokafka reads a control batch itself (``next(batch)`` for its
                # abort marker under read_committed): it holds no message.
                return batch
            return _GuardedBatch(batch, guard)

    return RawMemoryRecords


def _guarded_partition_records(base: Any) -> Any:
    class GuardedPartitionRecords(base):  # type: ignore[misc,valid-type]
        _retention_guard = True

        def __init__(self, tp: Any, records: Any, *args: Any) -> None:
            registry = _GUARDED.get(tp.topic)
            if registry is not None and hasattr(records, "_guard"):
                records._guard = _BatchGuard(tp, records._data, self, registry)
            super().__init__(tp, records, *args)

    return GuardedPartitionRecords


class _BatchGuard:
    """What the batches of one fetched partition share: where they came from and
    the partition records whose read position a stand-in must respect."""

    __slots__ = ("data", "owner", "registry", "tp")

    def __init__(self, tp: Any, data: bytes, owner: Any, registry: UndecodableBatches) -> None:
        self.tp = tp
        self.data = data
        self.owner = owner
        self.registry = registry

    def raw_batch(self, base_offset: int) -> tuple[bytes, int | None]:
        """The bytes of the batch starting at ``base_offset`` in the fetched data,
        and the offset the next entry there starts with (None: it is the last).

        Every message format starts a batch (or a v0/v1 message) with its offset
        (int64) and the length of what follows (int32)."""
        data, pos, found = self.data, 0, b""
        while pos + 12 <= len(data):
            offset = int.from_bytes(data[pos : pos + 8], "big", signed=True)
            if found:
                return found, offset
            end = pos + 12 + int.from_bytes(data[pos + 8 : pos + 12], "big", signed=True)
            if offset == base_offset:
                found = bytes(data[pos:end])
            pos = end
        return found, None


class _StandIn(NamedTuple):
    """The record an undecodable batch is handed over as (the attributes aiokafka's
    ``Fetcher._consumer_record`` reads)."""

    offset: int
    timestamp: int
    timestamp_type: int
    key: bytes | None
    value: bytes
    checksum: int | None
    headers: tuple[tuple[str, bytes], ...]


class _GuardedBatch:
    """A record batch whose decoding errors become one stand-in record."""

    __slots__ = ("_batch", "_guard", "_next")

    def __init__(self, batch: Any, guard: _BatchGuard) -> None:
        self._batch = batch
        self._guard = guard
        self._next: int | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)

    @property
    def next_offset(self) -> int:
        """Where the next fetch starts (aiokafka reads it after the batch): past the
        stand-in's range, which a corrupt batch's own header may not say."""
        return int(self._batch.next_offset) if self._next is None else self._next

    def validate_crc(self) -> bool:
        return True  # checked while iterating, so a bad CRC is a stand-in too

    def __iter__(self) -> Iterator[Any]:
        batch, guard = self._batch, self._guard
        # v0/v1 message sets (LegacyRecordBatch) have no base offset nor timestamp.
        base = getattr(batch, "base_offset", None)
        first = int(guard.owner.next_fetch_offset)
        if base is not None:
            first = max(first, int(base))
        corrupt = False
        try:
            if guard.owner._check_crcs and not batch.validate_crc():
                corrupt = True
                raise ValueError("the batch's CRC does not match its contents")
            for record in batch:
                first = int(record.offset) + 1
                yield record
        except Exception as exc:  # anything decoding these bytes raises is about them
            last = int(batch.next_offset) - 1
            # A v2 batch starts with its base offset, a v0/v1 wrapper with its last.
            raw, following = guard.raw_batch(last if base is None else int(base))
            if corrupt and following is not None:
                # The header (and so its last offset) is inside what the CRC
                # failed on: the next entry of the fetched data bounds the range.
                last = min(last, following - 1)
            if last < first:
                if not corrupt:
                    return  # every record was read: nothing is left to stand in for
                log.error("%s: corrupt batch with no offset range to skip", guard.tp)
                raise
            tp = guard.tp
            why = (
                str(exc)
                if str(exc).startswith(type(exc).__name__)
                else f"{type(exc).__name__}: {exc}"
            )
            guard.registry.add(tp.topic, tp.partition, UndecodableBatch(first, last, why))
            self._next = last + 1
            timestamp = int(getattr(batch, "first_timestamp", -1))
            yield _StandIn(last, timestamp, 0, None, raw, None, ())


# --- a slice's records, one record batch per partition -------------------------------
#
# ``AIOKafkaProducer.send`` costs, per record, a coroutine, a metadata wait, a
# partition lookup, a TopicPartition, an accumulator append and a future that the
# sender resolves when the batch is acknowledged (and ``asyncio.gather`` then
# watches, one callback each).  The customers agent sends every output of a slice and
# awaits them all at once (docs/design.md "The batched hot path"), so one future per
# record batch says the same: aiokafka's own ``create_batch``/``send_batch``.  What
# that API leaves to the caller is the partition: :class:`BatchSender` asks the
# producer's partitioner exactly as ``send`` does (``AIOKafkaProducer._partition``:
# the topic's partitions from the cluster metadata, as a list, and the available
# ones), so a keyed record lands where ``send`` would have put it.

# One record to send: topic, key, value, and its partition (None: the key's, as the
# producer's partitioner picks it).
Record = tuple[str, bytes | None, bytes, int | None]


class SentBatch(NamedTuple):
    """A submitted record batch: its acknowledgement (the batch's metadata, whose
    ``offset`` is its first record's) and how many records it holds."""

    ack: Awaitable[Any]
    records: int

    async def last_offset(self) -> int:
        """The offset of the batch's last record, once acknowledged."""
        return int((await self.ack).offset) + self.records - 1


class BatchSender:
    """Send records as one record batch per topic partition, in order within each.

    :meth:`send` returns its batches (:class:`SentBatch`); every record is
    acknowledged once their acks are.  A batch is closed before it is
    submitted, so the sender takes it at once rather than after the producer's
    linger: the caller has nothing more to add to it.  ``producer`` is a started
    ``AIOKafkaProducer`` (Faust's, :func:`streams.faust_adapter.kafka_producer`).
    """

    def __init__(self, producer: Any) -> None:
        self.producer = producer

    async def send(self, records: Iterable[Record]) -> list[SentBatch]:
        producer = self.producer
        partitioner = producer._partitioner
        builders: dict[tuple[str, int], Any] = {}
        # Per topic: its partitions as AIOKafkaProducer._partition reads them.
        topics: dict[str, tuple[list[int], list[int]]] = {}
        # Per topic and key: its partition (a customer's decision and nudge share a key).
        chosen: dict[tuple[str, bytes], int] = {}
        sent: list[SentBatch] = []
        for topic, key, value, partition in records:
            if partition is None:
                if key is not None and (topic, key) in chosen:
                    partition = chosen[topic, key]
                else:
                    parts = topics.get(topic)
                    if parts is None:
                        await producer.client._wait_on_metadata(topic)
                        metadata = producer._metadata
                        parts = topics[topic] = (
                            list(metadata.partitions_for_topic(topic)),
                            list(metadata.available_partitions_for_topic(topic)),
                        )
                    partition = int(partitioner(key, parts[0], parts[1]))
                    if key is not None:
                        chosen[topic, key] = partition
            tp = (topic, partition)
            builder = builders.get(tp)
            if builder is None:
                builder = builders[tp] = producer.create_batch()
            if builder.append(timestamp=None, key=key, value=value) is None:
                # Full: it goes now, and a new batch takes the record (a record
                # alone always fits an empty batch, as in the producer's own path).
                sent.append(await self._submit(builder, topic, partition))
                builder = builders[tp] = producer.create_batch()
                builder.append(timestamp=None, key=key, value=value)
        for (topic, partition), builder in builders.items():
            sent.append(await self._submit(builder, topic, partition))
        return sent

    async def _submit(self, builder: Any, topic: str, partition: int) -> SentBatch:
        builder.close()
        ack = await self.producer.send_batch(builder, topic, partition=partition)
        return SentBatch(ack, builder.record_count())
