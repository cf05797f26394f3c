"""Every use of Faust internals, in one place, pinned to the Faust version below.

The batched agents (docs/design.md, "The batched hot path") need four things
Faust 0.15 does not offer as public API:

* **the current event, set by hand.**  A table write takes its changelog
  partition (and a RocksDB read its partition database) from the *current
  event* of the task (``faust.streams._current_event``).  Inside
  ``Stream.take_events`` the agent's task has none (faust-streaming issues #497
  and #300), so :func:`event_context` sets it to an event of the partition whose
  rows are being read or written;
* **the changelog written directly, then the store.**  :func:`send_rows` sends a
  batch's rows to the table's changelog topic through the producer;
  :func:`apply_rows` writes them to the local store only once they are
  acknowledged, and sets the store's persisted changelog offset;
* **the producer buffer's flush threshold.**  ``ProducerBuffer.max_messages``
  (100) makes the conductor flush table changelog messages on every message once
  more than 100 are buffered, which a batch of table writes always exceeds;
* **the committed offsets** behind the consumer-lag figure;
* **one partition of a table at a time** (:class:`TableStore`): RocksDB keeps a
  database per partition (``Store._db_for_partition``, ``_visible_items``); the
  memory store is one dict, with the partition of each recovered key in
  ``Store._key_partition``;
* **the table recovery state** behind readiness (``TableManager.recovery``, not
  declared on ``TableManagerT``);
* **a consumer that hands messages over only when it is safe**
  (:class:`ReplayingConsumer`, :class:`_ReplayingMixin`): Faust drops what it
  fetched while flow is stopped (a rebalance, table recovery) and seeks back to
  the committed offsets to read it again, but aiokafka's ``seek_to_committed``
  does not move a partition whose committed offset is missing or 0, so those
  messages were never read again; and Faust let messages through while a first
  assignment's table was being recovered and while the stream partitions were
  being sought after recovery, which lost or skipped messages after a restart
  (docs/crash-safety.md "Crash safety").

aiokafka's internals (the guard against record batches the consumer cannot
decode) are fenced the same way in :mod:`streams.aiokafka_adapter`;
:func:`check_version` refuses a Faust or an aiokafka other than the pinned ones.
``tests/unit/streams/test_faust_adapter.py`` checks each of these against the
installed Faust and fails loudly on an upgrade: re-read the Faust source for
these names before raising :data:`PINNED_FAUST`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Mapping, Sequence
from importlib.metadata import version
from typing import Any, cast

import faust.streams
from faust.types import TP

from streams import aiokafka_adapter

log = logging.getLogger(__name__)

PINNED_FAUST = "0.15.3"
FAUST_VERSION = version("faust-streaming")


def check_version() -> None:
    """Refuse to run on a Faust, or an aiokafka, whose internals were not checked
    (see the module doc and :mod:`streams.aiokafka_adapter`)."""
    if FAUST_VERSION != PINNED_FAUST:
        raise RuntimeError(
            f"faust-streaming {FAUST_VERSION} is installed; streams.faust_adapter was "
            f"written against {PINNED_FAUST}. Re-check the internals it uses and update "
            "PINNED_FAUST (constraints.txt pins the tested version)."
        )
    aiokafka_adapter.check_version()


@contextlib.contextmanager
def event_context(event: Any) -> Iterator[None]:
    """Make ``event`` the task's current event for table reads and writes.

    The changelog partition of a write and the RocksDB partition of a read are
    ``event.message.partition``; the token restores whatever was set before.
    """
    token = faust.streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust.streams._current_event.reset(token)


def kafka_producer(app: Any) -> Any:
    """The app's ``AIOKafkaProducer``: the one Faust's ``Producer.send`` uses
    (``Producer._ensure_producer``, which raises ``NotReady`` before the producer
    service has started)."""
    return app.producer._ensure_producer()


async def send_rows(
    table: Any, partition: int, rows: Iterable[tuple[bytes, bytes]]
) -> Awaitable[int] | None:
    """Send rows to the table's changelog partition ``partition``; returns an
    awaitable of the highest offset, once every row is acknowledged (None: no rows).

    The rows leave through the app's producer directly, as one record batch
    (:class:`streams.aiokafka_adapter.BatchSender`; ``table.send_changelog`` would
    go through Faust's producer buffer, a ``FutureMessage`` and a callback per row,
    a visible share of the worker's time: docs/performance.md).  Nothing is written
    to the local store here: see :func:`apply_rows`.
    """
    topic = table.changelog_topic.get_topic_name()
    sender = aiokafka_adapter.BatchSender(kafka_producer(table.app))
    batches = await sender.send((topic, key, value, partition) for key, value in rows)
    if not batches:
        return None
    return _highest_offset(batches)


async def _highest_offset(batches: list[aiokafka_adapter.SentBatch]) -> int:
    return max([await b.last_offset() for b in batches])


def apply_rows(
    table: Any, partition: int, rows: Iterable[tuple[bytes, bytes]], offset: int
) -> None:
    """Write acknowledged changelog rows to the local store, then set the store's
    persisted changelog offset to ``offset`` (the highest of theirs).

    Only rows already in the changelog reach the local store, so the store is
    always a prefix of the changelog and its persisted offset never lags its
    rows.  Were rows written locally first (as Faust's per-row path does) and the
    offset later, a kill -9 in between leaves local rows newer than the offset;
    recovery on restart then replays the changelog from that offset over *some*
    of them, a torn store (a customer row older than the partition's stream
    clock) that re-fires ladders differently from the reference (docs/crash-safety.md
    "Crash safety").  A kill while this runs leaves the old offset: recovery replays
    these rows again, in order.  Call inside :func:`event_context` for an event
    of ``partition`` (the store's partition database comes from the current event).
    """
    data = table.data
    for key, value in rows:
        data[key] = value
    data.set_persisted_offset(TP(table.changelog_topic.get_topic_name(), partition), offset)


def set_producer_buffer_limit(app: Any, max_messages: int) -> None:
    """Raise the buffered-changelog count above which the conductor flushes."""
    app.producer.buffer.max_messages = max_messages


def committed_offsets(consumer: Any) -> dict[Any, int]:
    """The consumer's last committed offset per topic-partition."""
    return dict(consumer._committed_offset)


# --- tables: one partition at a time, recovery --------------------------------------


class TableStore:
    """A Faust table of raw bytes, read and written one partition at a time.

    :meth:`scan` yields only the rows of the partition asked for, whichever the
    store, so no caller filters rows by partition (the shape of quix-streams'
    ``StorePartition``).  RocksDB has a database per partition; the memory store
    is one dict, so this remembers the partition of every row written through
    :meth:`write` and takes that of recovered rows from the store.

    A write goes to the changelog at once and to the local store only when
    :meth:`settle` is called, after its acknowledgements (:func:`apply_rows` says
    why).  In between the rows are *unsettled*: held here, and every read
    (:meth:`get`, :meth:`scan`, :meth:`rows_for_thread`) sees them over the store.
    """

    def __init__(self, table: Any) -> None:
        self.table = table
        # Memory store: partition of each row written here (recovered rows: the store's).
        self._written: dict[bytes, int] = {}
        # Sent to the changelog, not yet in the local store: every row, and by partition.
        self._unsettled: dict[bytes, bytes] = {}
        self._unsettled_in: dict[int, dict[bytes, bytes]] = {}
        # Per partition: the pending acknowledgements' highest offsets, as they come in.
        self._offsets: dict[int, list[int]] = {}
        self._waiting: dict[int, int] = {}  # acknowledgements not yet in

    @property
    def is_rocksdb(self) -> bool:
        return hasattr(self.table.data, "_db_for_partition")

    def get(self, key: str) -> bytes | None:
        raw = key.encode()
        value = self._unsettled.get(raw)
        if value is None:
            value = self.table.get(raw)
        return bytes(value) if value is not None else None

    def within(self, event: Any) -> contextlib.AbstractContextManager[None]:
        """Reads and writes go to the partition of ``event`` (:func:`event_context`)."""
        return event_context(event)

    async def write(
        self, partition: int, rows: Sequence[tuple[bytes, bytes]]
    ) -> list[Awaitable[Any]]:
        """:func:`send_rows` to ``partition``; returns the changelog acks.  The rows
        are read from here until :meth:`settle` writes them to the local store."""
        if not rows:
            return []
        mine = self._unsettled_in.setdefault(partition, {})
        for key, value in rows:
            self._unsettled[key] = mine[key] = value
            if not self.is_rocksdb:
                self._written[key] = partition
        highest = await send_rows(self.table, partition, rows)
        if highest is None:
            return []
        self._waiting[partition] = self._waiting.get(partition, 0) + 1
        return [self._acked(partition, highest)]

    async def _acked(self, partition: int, highest: Awaitable[int]) -> None:
        offset = await highest
        self._offsets.setdefault(partition, []).append(offset)
        self._waiting[partition] -= 1

    def settle(self, partition: int) -> None:
        """Write the partition's acknowledged rows to the local store (:func:`apply_rows`).

        Call once every ack :meth:`write` returned for the partition is awaited,
        inside :meth:`within` for an event of the partition."""
        if self._waiting.get(partition):
            raise RuntimeError(f"settle({partition}) before its changelog acks are in")
        rows = self._unsettled_in.pop(partition, None)
        if not rows:
            return
        del self._waiting[partition]
        apply_rows(self.table, partition, rows.items(), max(self._offsets.pop(partition)))
        unsettled = self._unsettled
        for key in rows:
            del unsettled[key]

    def scan(self, partition: int) -> Iterator[tuple[str, bytes]]:
        """The partition's rows.  RocksDB: a live iterator, readable in another
        thread; memory store: iterate it on the event loop (see :meth:`rows_for_thread`).
        Unsettled rows are those as of the call."""
        return self._scan(partition, dict(self._unsettled_in.get(partition, {})))

    def _scan(self, partition: int, unsettled: dict[bytes, bytes]) -> Iterator[tuple[str, bytes]]:
        data = self.table.data
        if self.is_rocksdb:
            local: Iterable[tuple[bytes, bytes]] = data._visible_items(
                data._db_for_partition(partition)
            )
        else:
            of = self._partition_of(data)
            local = [(k, v) for k, v in list(data.items()) if of(k) == partition]
        for key, value in local:
            if key not in unsettled:
                yield key.decode(), value
        for key, value in unsettled.items():
            yield key.decode(), value

    def rows_for_thread(
        self, partitions: Iterable[int]
    ) -> list[tuple[int, Iterable[tuple[str, bytes]]]]:
        """Each partition's rows, safe to read in another thread while the agent
        writes: RocksDB iterators read a consistent view; a dict must not change
        while it is iterated, so the memory store's rows are copied here, in one pass."""
        wanted = list(partitions)
        if self.is_rocksdb:
            return [(p, self.scan(p)) for p in wanted]
        data = self.table.data
        of = self._partition_of(data)
        rows: dict[int, dict[bytes, bytes]] = {p: {} for p in wanted}
        for key, value in list(data.items()):
            p = of(key)
            mine = rows.get(p) if p is not None else None
            if mine is not None:
                mine[key] = value
        for p, mine in rows.items():
            mine.update(self._unsettled_in.get(p, {}))
        return [(p, [(k.decode(), v) for k, v in mine.items()]) for p, mine in rows.items()]

    def _partition_of(self, data: Any) -> Callable[[bytes], int | None]:
        written, recovered = self._written, data._key_partition

        def of(key: bytes) -> int | None:
            p = written.get(key)
            return recovered.get(key) if p is None else p

        return of


def recovery_state(app: Any) -> tuple[bool, bool]:
    """(table recovery has completed at least once, recovery is running now)."""
    recovery = app.tables.recovery
    return bool(recovery.completed.is_set()), bool(recovery.in_recovery)


# --- rewinding partitions that were never committed ------------------------------------


async def seek_to_committed_or_beginning(
    thread: Any, changelogs: Collection[str] = ()
) -> dict[Any, int | None]:
    """What ``Consumer.seek_to_committed`` should do: every assigned partition to
    its committed offset, and one with none (or 0) to its beginning.

    aiokafka's ``seek_to_committed`` only seeks ``if offset and offset > 0``; on
    the others the fetch position stays wherever prefetching left it, past the
    messages Faust dropped when it stopped the flow.  ``thread`` is the aiokafka
    transport's consumer thread (``Consumer._thread``).  Table changelog
    partitions (``changelogs``: topic names) are never committed; table recovery
    positions them itself, so they are left alone.
    """
    committed: dict[Any, int | None] = dict(await thread.seek_to_committed())
    never = [tp for tp, offset in committed.items() if not offset and tp.topic not in changelogs]
    if never:
        # The worker's reset policy is "earliest" (streams/worker/app.py): replay, never skip.
        await thread.seek_to_beginning(*never)
    return committed


class _ReplayingMixin:
    """What :class:`ReplayingConsumer` adds to a Faust consumer: no message is
    delivered while a table is being recovered or while positions are moved.

    * ``seek_to_committed`` rewinds never-committed partitions
      (:func:`seek_to_committed_or_beginning`).
    * ``on_partitions_revoked`` stops the flow at *every* rebalance, before
      anything else.  Faust stops it only when the consumer had an assignment
      (``App._on_partitions_revoked``: ``if assignment:``), so on the first join
      of a worker (or of one that held no partition) the flow stayed on while the
      new assignment was made fetchable (``Consumer.on_partitions_assigned``:
      ``_set_active_tps``) and before ``App._on_partitions_assigned`` paused the
      stream partitions for table recovery: the agents got messages while the
      table was still being recovered.  Stopped, nothing is fetched until
      recovery turns the flow on with only the changelog partitions active.
    * ``perform_seek`` runs with the flow stopped.  When recovery ends, Faust
      resumes the stream partitions and *then* seeks them to their committed
      offsets (``Recovery.on_recovery_completed``), with the flow still on from
      reading the changelogs.  Messages fetched from the old positions were
      delivered during the seek; once it returned, ``perform_seek`` set the read
      offsets back to the committed ones, so the next message from the old fetch
      looked like a jump and was recorded as a gap (``Consumer._add_gap``) that
      commits skip, and the messages in the gap, fetched again, were dropped as
      already read.  Measured by ``tests/e2e/test_crash_batch.py`` (kill -9
      mid-batch, immediate restart): whole bundles of the internal topic never
      processed, their events arriving only when ingest re-sent them, after the
      stream clock had passed them (inactivity steps fired early), and offsets
      never acked (a worker whose commits stalled).  docs/crash-safety.md "Crash safety".
    """

    # Provided by the Faust consumer it is mixed into (annotations only: no
    # attribute here may shadow the consumer's).
    app: Any
    _thread: Any
    flow_active: bool
    stop_flow: Callable[[], None]
    resume_flow: Callable[[], None]

    async def seek_to_committed(self) -> Mapping[TP, int]:
        changelogs = self.app.tables.changelog_topics
        return cast(
            Mapping[TP, int], await seek_to_committed_or_beginning(self._thread, changelogs)
        )

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        self.stop_flow()
        await super().on_partitions_revoked(revoked)  # type: ignore[misc]

    async def perform_seek(self) -> None:
        # One seek at a time: holding the flow makes a fetch that was in flight
        # return to Consumer.getmany with the flow stopped, which seeks again.
        lock = self.__dict__.get("_seek_lock")
        if lock is None:
            lock = self.__dict__["_seek_lock"] = asyncio.Lock()
        async with lock:
            active = self.flow_active
            self.stop_flow()
            try:
                await super().perform_seek()  # type: ignore[misc]
            finally:
                if active:
                    self.resume_flow()


def replaying_consumer() -> type[Any]:
    """The aiokafka transport's Consumer, rewinding never-committed partitions and
    holding the flow from the start of every rebalance (:class:`_ReplayingMixin`)."""
    from faust.transport.drivers.aiokafka import Consumer

    class ReplayingConsumer(_ReplayingMixin, Consumer):  # type: ignore[misc]
        pass

    return ReplayingConsumer


def use_replaying_consumer(app: Any) -> None:
    """Make ``app`` create its consumer with :func:`replaying_consumer` (before start)."""
    app.transport.Consumer = replaying_consumer()
