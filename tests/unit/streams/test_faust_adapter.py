"""The Faust internals streams.faust_adapter relies on, checked against the installed Faust.

These fail loudly on a Faust upgrade that moves or changes them: re-read the Faust
source for each name before raising ``PINNED_FAUST``.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from types import SimpleNamespace
from typing import Any

import faust
import faust.streams
import pytest
from faust.tables.table import Table
from faust.transport.consumer import Consumer
from faust.transport.producer import ProducerBuffer
from faust.types import TP

from streams import faust_adapter
from streams.faust_adapter import PINNED_FAUST, check_version, event_context
from tests.fixtures.fake_producer import FakeKafkaProducer, faust_app_with


def test_the_installed_faust_is_the_pinned_one() -> None:
    assert faust.__version__ == PINNED_FAUST
    check_version()  # does not raise


def test_check_version_refuses_another_faust(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faust_adapter, "FAUST_VERSION", "0.16.0")
    with pytest.raises(RuntimeError, match=r"0\.16\.0.*written against 0\.15\.3"):
        check_version()


class FakeEvent:
    """What the adapter and Faust read of an event: its message's partition."""

    def __init__(self, partition: int) -> None:
        self.message = SimpleNamespace(partition=partition, topic="t")


def fake_event(partition: int) -> Any:
    return FakeEvent(partition)


def test_event_context_sets_and_restores_the_current_event() -> None:
    assert isinstance(faust.streams._current_event, contextvars.ContextVar)
    assert faust.streams.current_event() is None
    outer, inner = fake_event(1), fake_event(3)
    with event_context(outer):
        assert faust.streams.current_event() is outer
        with event_context(inner):
            assert faust.streams.current_event() is inner
        assert faust.streams.current_event() is outer
    assert faust.streams.current_event() is None


def test_a_table_write_takes_its_changelog_partition_from_the_current_event() -> None:
    # Table.on_key_set -> send_changelog(partition_for_key(key)) -> current_event().
    assert "self.partition_for_key(key)" in inspect.getsource(Table.on_key_set)
    source = inspect.getsource(Table.partition_for_key)
    assert "current_event()" in source and "event.message.partition" in source
    app = faust.App("adapter-test", store="memory://")
    table = app.Table("t", partitions=8, key_type=bytes, value_type=bytes)
    table._verified_source_topics_for_partitions.add("t")  # no consumer in a unit test
    with pytest.raises(TypeError, match="outside of stream iteration"):
        table.partition_for_key(b"k")
    with event_context(fake_event(5)):
        assert table.partition_for_key(b"k") == 5


def test_the_rocksdb_store_reads_and_writes_the_current_events_partition() -> None:
    from faust.stores import rocksdb

    for name in ("_set", "_get"):
        source = inspect.getsource(getattr(rocksdb.Store, name))
        assert "current_event()" in source and "event.message.partition" in source


def test_the_producer_buffer_limit_is_the_attribute_the_conductor_checks() -> None:
    assert ProducerBuffer.max_messages == 100
    assert "self.size > self.max_messages" in inspect.getsource(ProducerBuffer.wait_until_ebb)
    app = SimpleNamespace(producer=SimpleNamespace(buffer=SimpleNamespace(max_messages=100)))
    faust_adapter.set_producer_buffer_limit(app, 8000)
    assert app.producer.buffer.max_messages == 8000


def test_committed_offsets_are_where_the_adapter_reads_them() -> None:
    assert "self._committed_offset" in inspect.getsource(Consumer.__init__)
    consumer = SimpleNamespace(_committed_offset={("t", 0): 7})
    assert faust_adapter.committed_offsets(consumer) == {("t", 0): 7}


def test_take_events_acks_after_the_batch_and_leaves_no_current_event() -> None:
    # The batched agents rely on both: events are acked only once the agent asks
    # for the next batch, and the agent's task has no current event (so the
    # adapter must set it for table access).
    source = inspect.getsource(faust.streams.Stream.take_events)
    assert "yield list(events)" in source
    after_yield = source.split("yield list(events)", 1)[1]
    assert "await self.ack(event)" in after_yield


def test_send_rows_sends_what_the_tables_changelog_send_would_and_apply_rows_persists() -> None:
    from faust.tables.base import Collection

    # What send_rows + apply_rows replace, per row: send_changelog(partition, key,
    # value) to the changelog topic, whose ack callback sets the store's persisted offset.
    send_changelog = inspect.getsource(Collection.send_changelog)
    assert "self.changelog_topic.send_soon(" in send_changelog
    assert "callback=self._on_changelog_sent" in send_changelog
    on_sent = inspect.getsource(Collection._on_changelog_sent)
    assert "self.data.set_persisted_offset(res.topic_partition, res.offset)" in on_sent
    # ManagedUserDict.__setitem__ is the store write plus on_key_set (the changelog).
    from mode.utils.collections import ManagedUserDict

    setitem = inspect.getsource(ManagedUserDict.__setitem__)
    assert "self.on_key_set(key, value)" in setitem and "self.data[key] = value" in setitem
    # The rows leave through the aiokafka producer that Faust's own send uses.
    from faust.transport.drivers.aiokafka import Producer

    assert "self._ensure_producer()" in inspect.getsource(Producer.send)
    assert "return self._producer" in inspect.getsource(Producer._ensure_producer)

    table, sent, persisted = fake_table()

    async def scenario() -> None:
        highest = await faust_adapter.send_rows(table, 3, [(b"c/a", b"1"), (b"clock/3", b"2")])
        assert sent == [
            ("app-customers-changelog", b"c/a", b"1", 3),
            ("app-customers-changelog", b"clock/3", b"2", 3),
        ]
        assert table.app.producer._ensure_producer().batches == [
            ("app-customers-changelog", 3, 2)  # one record batch
        ]
        assert table.data == {} and persisted == []  # sent, not in the local store
        assert highest is not None and await highest == 42
        faust_adapter.apply_rows(table, 3, [(b"c/a", b"1"), (b"clock/3", b"2")], 42)
        assert table.data == {b"c/a": b"1", b"clock/3": b"2"}
        assert persisted == [(TP("app-customers-changelog", 3), 42)]
        assert await faust_adapter.send_rows(table, 3, []) is None

    asyncio.run(scenario())


def fake_table() -> tuple[Any, list[tuple[str, bytes, bytes, int]], list[tuple[Any, int]]]:
    """A table whose producer acks every send at offset 40 + sends so far."""
    sent: list[tuple[str, bytes, bytes, int]] = []
    persisted: list[tuple[Any, int]] = []

    class Store(dict[bytes, bytes]):
        _key_partition: dict[bytes, int] = {}

        def set_persisted_offset(self, tp: Any, offset: int) -> None:
            persisted.append((tp, offset))

    def record(topic: str, key: bytes | None, value: bytes, partition: int) -> int:
        assert key is not None
        sent.append((topic, key, value, partition))
        return 40 + len(sent)

    table = SimpleNamespace(
        data=Store(),
        changelog_topic=SimpleNamespace(get_topic_name=lambda: "app-customers-changelog"),
        app=faust_app_with(FakeKafkaProducer(record, partitions=4)),
    )
    table.get = table.data.get
    return table, sent, persisted


def test_written_rows_are_read_before_they_settle_and_stored_only_after() -> None:
    # The local store is only ever a prefix of the changelog: a row reaches it
    # once acknowledged, at settle(), with the persisted offset of the highest ack.
    table, sent, persisted = fake_table()
    store = faust_adapter.TableStore(table)
    assert sent == []

    async def scenario() -> None:
        first = await store.write(1, [(b"c/a", b"1"), (b"clock/1", b"c1")])
        second = await store.write(1, [(b"c/a", b"2")])
        assert table.data == {}  # nothing local yet
        assert store.get("c/a") == b"2" and store.get("clock/1") == b"c1"
        assert sorted(store.scan(1)) == [("c/a", b"2"), ("clock/1", b"c1")]
        assert list(store.scan(0)) == []
        with pytest.raises(RuntimeError, match="before its changelog acks"):
            store.settle(1)
        await asyncio.gather(*first, *second)
        store.settle(1)
        assert table.data == {b"c/a": b"2", b"clock/1": b"c1"}
        assert persisted == [(TP("app-customers-changelog", 1), 43)]
        store.settle(1)  # nothing unsettled: no second offset write
        assert len(persisted) == 1
        assert store.get("c/a") == b"2"

    asyncio.run(scenario())


# --- tables one partition at a time, recovery state ------------------------------------


def test_the_rocksdb_store_has_one_database_per_partition_read_by_visible_items() -> None:
    from faust.stores import rocksdb

    assert "self._dbs[partition]" in inspect.getsource(rocksdb.Store._db_for_partition)
    visible = inspect.getsource(rocksdb.Store._visible_items)
    assert "db.items()" in visible and "self.offset_key" in visible  # the offset row hidden


def test_the_memory_store_keeps_the_partition_of_each_recovered_key() -> None:
    from faust.stores import memory

    assert "self._key_partition" in inspect.getsource(memory.Store.__post_init__)
    batch = inspect.getsource(memory.Store._create_batch_iterator)
    assert "self._key_partition[key] = event.message.partition" in batch


def test_table_recovery_state_is_where_the_adapter_reads_it() -> None:
    from faust.tables.manager import TableManager
    from faust.tables.recovery import Recovery

    assert isinstance(TableManager.__dict__["recovery"], property)
    assert "self.completed = Event()" in inspect.getsource(Recovery.__init__)
    assert "self.in_recovery = True" in inspect.getsource(Recovery._set_recovery_started)
    app = faust.App("adapter-recovery-test", store="memory://")
    assert faust_adapter.recovery_state(app) == (False, False)  # not started
    app.tables.recovery.completed.set()
    assert faust_adapter.recovery_state(app) == (True, False)
    app.tables.recovery.in_recovery = True
    assert faust_adapter.recovery_state(app) == (True, True)


def test_a_memory_table_scans_one_partition_written_or_recovered() -> None:
    app = faust.App("adapter-store-test", store="memory://")
    table = app.Table("customers", partitions=4, key_type=bytes, value_type=bytes)
    store = faust_adapter.TableStore(table)
    assert not store.is_rocksdb
    sent: list[tuple[str, bytes, int]] = []

    def record(topic: str, key: bytes | None, value: bytes, partition: int) -> int:
        assert key is not None
        sent.append((topic, key, partition))
        return len(sent)

    fake = FakeKafkaProducer(record, partitions=4)
    app.producer._ensure_producer = lambda: fake  # type: ignore[attr-defined]  # no broker here

    async def write() -> None:
        with store.within(fake_event(2)):
            acks = await store.write(2, [(b"c/a", b"1"), (b"clock/2", b"2")])
            assert len(acks) == 1  # one awaitable: every row's changelog ack
            assert list(store.scan(2)) == [("c/a", b"1"), ("clock/2", b"2")]  # unsettled
            assert dict(table.data) == {}
            await asyncio.gather(*acks)
            store.settle(2)
        assert dict(table.data) == {b"c/a": b"1", b"clock/2": b"2"}

    asyncio.run(write())
    assert [(k, p) for _, k, p in sent] == [(b"c/a", 2), (b"clock/2", 2)]
    recovered = SimpleNamespace(
        key=b"c/b", value=b"3", message=SimpleNamespace(partition=1, value=b"3")
    )
    table.data.apply_changelog_batch([recovered], lambda k: k, lambda v: v)

    assert list(store.scan(2)) == [("c/a", b"1"), ("clock/2", b"2")]
    assert list(store.scan(1)) == [("c/b", b"3")]
    assert list(store.scan(0)) == []
    assert store.rows_for_thread([0, 1, 2]) == [
        (0, []),
        (1, [("c/b", b"3")]),
        (2, [("c/a", b"1"), ("clock/2", b"2")]),
    ]
    assert store.get("c/b") == b"3" and store.get("c/missing") is None


# --- rewinding partitions never committed ---------------------------------------------


def test_aiokafka_does_not_rewind_a_partition_never_committed_and_faust_relies_on_it() -> None:
    # Why ReplayingConsumer exists: Faust drops what it fetched while flow was
    # stopped and seeks back to the committed offsets; aiokafka skips partitions
    # whose committed offset is None or 0, so those messages were never re-read.
    from aiokafka import AIOKafkaConsumer
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
    from faust.transport.drivers.aiokafka import Consumer as AIOConsumer

    assert "if offset and offset > 0:" in inspect.getsource(AIOKafkaConsumer.seek_to_committed)
    getmany = inspect.getsource(Consumer.getmany)
    assert "Seek back to committed offsets" in getmany and "await self.perform_seek()" in getmany
    assert "await self.seek_to_committed()" in inspect.getsource(Consumer.perform_seek)
    assert "self._thread.seek_to_committed()" in inspect.getsource(AIOConsumer.seek_to_committed)
    for name in ("seek_to_committed", "seek_to_beginning"):
        assert callable(getattr(AIOKafkaConsumerThread, name))
    from faust.tables.manager import TableManager

    assert isinstance(TableManager.__dict__["changelog_topics"], property)
    assert issubclass(faust_adapter.replaying_consumer(), AIOConsumer)


def test_partitions_never_committed_are_rewound_to_their_beginning() -> None:
    calls: list[tuple[str, tuple[Any, ...]]] = []

    never, zero, some = TP("never", 0), TP("zero", 1), TP("some", 2)
    changelog = TP("app-customers-changelog", 0)  # never committed, by design

    class Thread:
        async def seek_to_committed(self) -> dict[TP, int | None]:
            calls.append(("committed", ()))
            return {never: None, zero: 0, some: 7, changelog: None}

        async def seek_to_beginning(self, *tps: TP) -> None:
            calls.append(("beginning", tps))

    committed = asyncio.run(
        faust_adapter.seek_to_committed_or_beginning(Thread(), {"app-customers-changelog"})
    )
    assert committed == {never: None, zero: 0, some: 7, changelog: None}
    # Table recovery positions the changelog itself: it is not rewound.
    assert calls == [("committed", ()), ("beginning", (never, zero))]

    class AllCommitted(Thread):
        async def seek_to_committed(self) -> dict[TP, int | None]:
            return {some: 7}

    calls.clear()
    asyncio.run(faust_adapter.seek_to_committed_or_beginning(AllCommitted()))
    assert calls == []  # nothing to rewind: no extra seek


def test_the_worker_uses_the_replaying_consumer() -> None:
    from streams.config import Config
    from streams.worker.app import RetentionApp

    app = RetentionApp(Config())
    consumer = app.faust_app.transport.Consumer
    assert consumer.__name__ == "ReplayingConsumer"
    for name in ("seek_to_committed", "on_partitions_revoked"):
        assert getattr(consumer, name) is getattr(faust_adapter._ReplayingMixin, name)


# --- the flow held from the start of every rebalance ---------------------------------


def test_faust_leaves_the_flow_running_through_a_first_assignment() -> None:
    # Why _ReplayingMixin.on_partitions_revoked exists: Faust stops the flow on a
    # rebalance only when the consumer had an assignment, and the consumer makes
    # the new assignment fetchable before the app pauses it for table recovery.
    from faust.app.base import App

    revoked = inspect.getsource(App._on_partitions_revoked)
    assert "if assignment:" in revoked
    assert revoked.index("if assignment:") < revoked.index("T(consumer.stop_flow)()")
    assigned = inspect.getsource(Consumer.on_partitions_assigned)
    assert assigned.index("self._set_active_tps(assigned)") < assigned.index(
        "self._on_partitions_assigned"
    )
    assert "T(consumer.pause_partitions)(assigned)" in inspect.getsource(
        App._on_partitions_assigned
    )
    assert "if not self.flow_active:" in inspect.getsource(Consumer._wait_next_records)
    consumer = faust_adapter.replaying_consumer()
    for name in ("on_partitions_revoked", "perform_seek"):
        assert getattr(consumer, name) is getattr(faust_adapter._ReplayingMixin, name)
    for name in ("stop_flow", "resume_flow"):  # the mixin shadows nothing
        assert getattr(consumer, name) is getattr(Consumer, name)


def test_faust_seeks_stream_partitions_after_resuming_them_with_the_flow_on() -> None:
    # Why _ReplayingMixin.perform_seek holds the flow: when table recovery ends,
    # Faust resumes the stream partitions and only then seeks them to their
    # committed offsets, with the flow on (recovery turned it on to read the
    # changelogs); messages fetched meanwhile are delivered, and the read offsets
    # they moved are overwritten once the seek returns, so the next jump in
    # offsets is recorded as a gap that commits skip.
    from faust.tables.recovery import Recovery

    done = inspect.getsource(Recovery.on_recovery_completed)
    assert done.index("consumer.resume_partitions(") < done.index("consumer.perform_seek()")
    assert done.index("consumer.perform_seek()") < done.index("consumer.resume_flow()")
    seek = inspect.getsource(Consumer.perform_seek)
    assert seek.index("await self.seek_to_committed()") < seek.index("read_offset.update(")
    drain = inspect.getsource(Consumer._drain_messages)
    assert "await self._add_gap(tp, r_offset + 1, offset)" in drain
    assert "if not self.flow_active:" in inspect.getsource(Consumer.getmany)


def test_every_rebalance_stops_the_flow_before_faust_handles_the_revocation() -> None:
    class FaustConsumer:  # the two methods the mixin relies on
        def __init__(self) -> None:
            self.flow_active = True
            self.seen: list[tuple[bool, set[TP]]] = []

        def stop_flow(self) -> None:
            self.flow_active = False

        async def on_partitions_revoked(self, revoked: set[TP]) -> None:
            self.seen.append((self.flow_active, revoked))

    class Held(faust_adapter._ReplayingMixin, FaustConsumer):
        pass

    consumer = Held()
    asyncio.run(consumer.on_partitions_revoked(set()))  # a first join: nothing held yet
    assert consumer.seen == [(False, set())]
    assert not consumer.flow_active  # table recovery resumes it


def test_a_seek_runs_with_the_flow_stopped_and_leaves_it_as_it_was() -> None:
    class FaustConsumer:
        def __init__(self, active: bool) -> None:
            self.flow_active = active
            self.during: list[bool] = []

        def stop_flow(self) -> None:
            self.flow_active = False

        def resume_flow(self) -> None:
            self.flow_active = True

        async def perform_seek(self) -> None:
            self.during.append(self.flow_active)

    class Held(faust_adapter._ReplayingMixin, FaustConsumer):
        pass

    after_recovery = Held(active=True)  # Recovery.on_recovery_completed
    asyncio.run(after_recovery.perform_seek())
    assert after_recovery.during == [False] and after_recovery.flow_active
    in_a_rebalance = Held(active=False)  # Consumer.getmany while the flow is stopped
    asyncio.run(in_a_rebalance.perform_seek())
    assert in_a_rebalance.during == [False] and not in_a_rebalance.flow_active

    class Failing(Held):
        pass

    async def boom(self: Any) -> None:
        raise RuntimeError("seek failed")

    FaustConsumer.perform_seek = boom  # type: ignore[method-assign]
    failing = Failing(active=True)
    with pytest.raises(RuntimeError):
        asyncio.run(failing.perform_seek())
    assert failing.flow_active  # not left stopped by a failed seek


def test_seeks_do_not_overlap() -> None:
    # Holding the flow makes a fetch in flight come back to Consumer.getmany with
    # the flow stopped, and getmany then seeks too: the two run one after the other.
    class FaustConsumer:
        def __init__(self) -> None:
            self.flow_active = True
            self.running = 0
            self.most = 0

        def stop_flow(self) -> None:
            self.flow_active = False

        def resume_flow(self) -> None:
            self.flow_active = True

        async def perform_seek(self) -> None:
            self.running += 1
            self.most = max(self.most, self.running)
            await asyncio.sleep(0.01)
            self.running -= 1

    class Held(faust_adapter._ReplayingMixin, FaustConsumer):
        pass

    async def both(consumer: Held) -> None:
        await asyncio.gather(consumer.perform_seek(), consumer.perform_seek())

    consumer = Held()
    asyncio.run(both(consumer))
    assert consumer.most == 1 and consumer.flow_active
