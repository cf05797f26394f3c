"""Every use of Faust internals, in one place, pinned to the Faust version below.

The batched agents (docs/design.md, "The batched hot path") need four things
Faust 0.15 does not offer as public API:

* **the current event, set by hand.**  A table write takes its changelog
  partition (and a RocksDB read its partition database) from the *current
  event* of the task (``faust.streams._current_event``).  Inside
  ``Stream.take_events`` the agent's task has none (faust-streaming issues #497
  and #300), so :func:`event_context` sets it to an event of the partition whose
  rows are being read or written;
* **the changelog written directly.**  :func:`write_rows` sends a batch's rows
  to the table's changelog topic through the producer and sets the store's
  persisted offset once per partition, as Faust's per-row path would leave it;
* **the producer buffer's flush threshold.**  ``ProducerBuffer.max_messages``
  (100) makes the conductor flush table changelog messages on every message once
  more than 100 are buffered, which a batch of table writes always exceeds;
* **the committed offsets** behind the consumer-lag figure;
* **one partition of a table at a time** (:class:`TableStore`): RocksDB keeps a
  database per partition (``Store._db_for_partition``, ``_visible_items``); the
  memory store is one dict, with the partition of each recovered key in
  ``Store._key_partition``;
* **the table recovery state** behind readiness (``TableManager.recovery``, not
  declared on ``TableManagerT``).

``tests/unit/streams/test_faust_adapter.py`` checks each of these against the
installed Faust and fails loudly on an upgrade: re-read the Faust source for
these names before raising :data:`PINNED_FAUST`.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from importlib.metadata import version
from typing import Any, cast

import faust.streams
from faust.transport.consumer import CONSUMER_FETCHING
from faust.types import TP

PINNED_FAUST = "0.15.3"
FAUST_VERSION = version("faust-streaming")


def check_version() -> None:
    """Refuse to run on a Faust whose internals were not checked (see module doc)."""
    if FAUST_VERSION != PINNED_FAUST:
        raise RuntimeError(
            f"faust-streaming {FAUST_VERSION} is installed; streams.faust_adapter was "
            f"written against {PINNED_FAUST}. Re-check the internals it uses and update "
            "PINNED_FAUST (constraints.txt pins the tested version)."
        )


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


async def write_rows(
    table: Any, partition: int, rows: Iterable[tuple[bytes, bytes]]
) -> list[Awaitable[Any]]:
    """Write rows to the local store and to the changelog; returns one awaitable
    that completes once every row is acknowledged by the broker.

    The rows leave through the app's producer directly, to the changelog partition
    ``partition`` (``table.send_changelog`` would go through Faust's producer
    buffer, a ``FutureMessage`` and a callback per row: about 8 % of the worker's
    time in a profile, docs/performance.md).  When the acks are in, the store's
    persisted changelog offset is set once for the partition, to the highest
    offset, as Faust's per-row callback (``Collection._on_changelog_sent``) would
    leave it.  A crash before that leaves an older persisted offset: recovery
    then reads more of the changelog, never less.

    Faust's commit-time producer flush gives up on a 0.1 s gap in its buffer
    (``ProducerBuffer.flush_atmost``), so without awaiting these acks offsets
    could be committed before the rows their events produced reach the
    changelog; on a restart, recovery would replay an older changelog value over
    the newer local row.  The agent awaits the returned awaitable before its
    batch is acked.  Call inside :func:`event_context` for an event of
    ``partition`` (the store's partition database comes from the current event).
    """
    data = table.data
    topic = table.changelog_topic.get_topic_name()
    send = table.app.producer.send
    acks = []
    for key, value in rows:
        data[key] = value
        acks.append(await send(topic, key, value, partition, None, None))
    if not acks:
        return []
    return [_persisted_when_acked(data, TP(topic, partition), acks)]


async def _persisted_when_acked(data: Any, tp: TP, acks: list[Awaitable[Any]]) -> None:
    metadata = await asyncio.gather(*acks)
    data.set_persisted_offset(tp, max(m.offset for m in metadata))


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
    """

    def __init__(self, table: Any) -> None:
        self.table = table
        # Memory store: partition of each row written here (recovered rows: the store's).
        self._written: dict[bytes, int] = {}

    @property
    def is_rocksdb(self) -> bool:
        return hasattr(self.table.data, "_db_for_partition")

    def get(self, key: str) -> bytes | None:
        value = self.table.get(key.encode())
        return bytes(value) if value is not None else None

    def put(self, key: str, value: bytes) -> None:
        self.table[key.encode()] = value

    def within(self, event: Any) -> contextlib.AbstractContextManager[None]:
        """Reads and writes go to the partition of ``event`` (:func:`event_context`)."""
        return event_context(event)

    async def write(
        self, partition: int, rows: Sequence[tuple[bytes, bytes]]
    ) -> list[Awaitable[Any]]:
        """:func:`write_rows` to ``partition``; returns the changelog acks."""
        if not self.is_rocksdb:
            for key, _ in rows:
                self._written[key] = partition
        return await write_rows(self.table, partition, rows)

    def scan(self, partition: int) -> Iterator[tuple[str, bytes]]:
        """The partition's rows.  RocksDB: a live iterator, readable in another
        thread; memory store: iterate it on the event loop (see :meth:`rows_for_thread`)."""
        data = self.table.data
        if self.is_rocksdb:
            for key, value in data._visible_items(data._db_for_partition(partition)):
                yield key.decode(), value
            return
        of = self._partition_of(data)
        for key, value in list(data.items()):
            if of(key) == partition:
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
        out: dict[int, list[tuple[str, bytes]]] = {p: [] for p in wanted}
        for key, value in list(data.items()):
            p = of(key)
            rows = out.get(p) if p is not None else None
            if rows is not None:
                rows.append((key.decode(), value))
        return list(out.items())

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


# --- item 6: a consumer drain loop without wait_first per message (measured, off) ---
#
# Faust's drain loop (``Consumer._drain_messages``) hands every fetched message to
# the conductor with ``wait_first(callback(message), suspend_flow.wait())``: four
# tasks created and three cancelled per message, so that a callback blocked on
# flow control, a full channel queue or the producer buffer cannot hold up a
# rebalance.  :class:`InlineDrainConsumer` awaits the callback directly when none
# of those can block it (checked before the call), and falls back to
# ``wait_first`` otherwise.  It is used by the bench's bare-Faust line
# ``RETENTION_BENCH_MODE=inline`` and, only with ``RETENTION_INLINE_DRAIN=1``, by
# the worker: docs/performance.md has what it bought and why it is not on.


def _inline_safe(app: Any, consumer: Any) -> Callable[[Any], bool]:
    """A check that the conductor's callback for a message of ``tp`` cannot suspend."""
    conductor = app.topics
    tp_index = conductor._tp_index
    lock = conductor._tp_to_callback_lock
    flow = app.flow_control
    buffer = app.producer.buffer
    suspend = consumer.suspend_flow

    def safe(tp: Any) -> bool:
        if suspend.is_set() or not flow.is_active() or lock.locked():
            return False
        if buffer.size > buffer.max_messages:
            return False
        return not any(chan.queue.full() for chan in tp_index.get(tp, ()))

    return safe


def inline_drain_consumer() -> type[Any]:
    """The aiokafka transport's Consumer with the inline drain loop."""
    from faust.transport.drivers.aiokafka import Consumer
    from mode import Service

    class InlineDrainConsumer(Consumer):  # type: ignore[misc]
        async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover
            # Faust 0.15.3's loop (faust/transport/consumer.py), but the callback.
            callback = self.callback
            getmany = self.getmany
            consumer_should_stop = self._stopped.is_set
            fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
            get_read_offset = self._read_offset.__getitem__
            set_read_offset = self._read_offset.__setitem__
            set_flag = self.diag.set_flag
            unset_flag = self.diag.unset_flag
            commit_every = self._commit_every
            acks_enabled_for = self.app.topics.acks_enabled_for
            inline = _inline_safe(self.app, self)
            yield_every = 100
            num_since_yield = 0
            try:
                while not (consumer_should_stop() or fetcher_should_stop()):
                    set_flag(CONSUMER_FETCHING)
                    ait = getmany(timeout=1.0)
                    await self.sleep(0)
                    if not self.should_stop:
                        async for tp, message in ait:
                            num_since_yield += 1
                            if num_since_yield > yield_every:
                                await asyncio.sleep(0)
                                num_since_yield = 0
                            offset = message.offset
                            r_offset = get_read_offset(tp)
                            if r_offset is None or offset >= r_offset:
                                gap = offset - (r_offset or 0)
                                if gap > 1 and r_offset and acks_enabled_for(message.topic):
                                    await self._add_gap(tp, r_offset + 1, offset)
                                if commit_every is not None and self._n_acked >= commit_every:
                                    self._n_acked = 0
                                    await self.commit()
                                if inline(tp):
                                    await callback(message)
                                else:
                                    await self.wait_first(
                                        callback(message), self.suspend_flow.wait()
                                    )
                                set_read_offset(tp, offset)
                        unset_flag(CONSUMER_FETCHING)
            except self.consumer_stopped_errors:
                if self.transport.app.should_stop:
                    return
                raise
            except asyncio.CancelledError:
                if self.transport.app.should_stop:
                    return
                raise
            except Exception as exc:
                self.log.exception("Drain messages raised: %r", exc)
                raise
            finally:
                unset_flag(CONSUMER_FETCHING)

    return InlineDrainConsumer


def use_inline_drain(app: Any) -> None:
    """Make ``app`` create its consumer with :func:`inline_drain_consumer` (before start)."""
    app.transport.Consumer = inline_drain_consumer()
