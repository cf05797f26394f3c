"""The Faust app: topics, tables and agents wired to the pure core.

Agents only translate: bytes from Kafka go into :class:`agents.ingest.IngestProcessor`
and :class:`agents.customer.CustomerProcessor`; what they return goes back out.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypedDict

import faust
from aiokafka.partitioner import DefaultPartitioner

from agents.core.clock import WallClock, system_clock
from agents.core.engine import Engine
from agents.customer import CustomerProcessor, group_by_partition, input_sources
from agents.ingest import IngestProcessor
from agents.messages import bundles, dumps
from streams.config import Config
from streams.faults import FaultInjector
from streams.faust_adapter import (
    check_version,
    committed_offsets,
    event_context,
    set_producer_buffer_limit,
    write_rows,
)
from streams.kafka import ssl_context
from streams.metrics import Metrics
from streams.readmodel import ReadModelWriter, connect

log = logging.getLogger(__name__)


def crash_only(fn: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
    """Exit the process when an agent fails instead of leaving a stalled worker.

    Faust logs a crashed agent and keeps the worker up with nothing consuming.
    A supervisor (systemd, Kubernetes, the test harness) restarts the process, and
    at-least-once processing replays from the last committed offset.
    """

    @functools.wraps(fn)
    async def wrapper(stream: Any) -> None:
        try:
            await fn(stream)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.critical(
                "agent %s crashed; exiting so the worker restarts", fn.__name__, exc_info=True
            )
            logging.shutdown()
            os._exit(70)

    return wrapper


class _RawTopicOptions(TypedDict):
    """Keyword arguments for ``App.topic``: keys and values stay raw bytes."""

    key_type: type[bytes]
    value_type: type[bytes]
    key_serializer: str
    value_serializer: str


class TableStore:
    """:class:`agents.customer.StateStore` over a Faust table of raw bytes."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def get(self, key: str) -> bytes | None:
        value = self.table.get(key.encode())
        return bytes(value) if value is not None else None

    def put(self, key: str, value: bytes) -> None:
        self.table[key.encode()] = value

    def scan(self, partition: int) -> Iterable[tuple[str, bytes]]:
        data = self.table.data
        db_for = getattr(data, "_db_for_partition", None)
        if db_for is not None:  # RocksDB: one database per partition
            for key, value in data._visible_items(db_for(partition)):
                yield key.decode(), value
        else:  # memory store: one dict; the processor filters by partition
            for key, value in list(self.table.items()):
                yield key.decode(), value


def _credentials(config: Config) -> Any:
    sec = config.kafka_security
    if sec.protocol == "PLAINTEXT":
        return None
    ctx = ssl_context(config)
    if sec.protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=sec.sasl_username,
            password=sec.sasl_password,
            ssl_context=ctx,
            mechanism=sec.sasl_mechanism,
        )
    return faust.SSLCredentials(ctx)


def faust_settings(config: Config) -> dict[str, Any]:
    """The Faust app settings of a worker: the worker and the bench's bare agent share them."""
    return dict(
        broker=[f"kafka://{hp}" for hp in config.kafka.split(",")],
        broker_credentials=_credentials(config),
        store=config.store,
        datadir=str(config.data_dir),
        processing_guarantee=config.processing_guarantee,
        topic_partitions=config.partitions,
        topic_replication_factor=config.replication_factor,
        topic_allow_declare=True,
        web_enabled=config.web_enabled,
        web_bind=config.web_host,
        # The address other workers use to reach this one (routed lookups);
        # binding 0.0.0.0 needs a reachable name here.
        web_host=config.web_advertised_host or config.web_host,
        web_port=config.web_port,
        # Faust's built-in endpoints, chosen one by one (docs/operations.md):
        # its stats and assignment pages on (README "Operations"; counters
        # only); /table off, because it serves raw customer rows (ids, spend,
        # consent) to anyone who reaches the port; /router off, because
        # routing here happens in-process (RetentionApp.owner_of) and the
        # page only advertises every worker's URL; /graph and /performance
        # off, as /metrics covers what they would show.
        web_stats_enabled=True,
        web_tables_enabled=False,
        web_router_enabled=False,
        web_graph_enabled=False,
        web_metrics_enabled=False,
        consumer_auto_offset_reset="earliest",
        producer_max_request_size=2 * 1024 * 1024,
        key_serializer="raw",
        value_serializer="raw",
        logging_config=None,
        # Chosen by measurement (docs/benchmarks.md): a batch's outputs leave in a
        # few large produce requests rather than one per 16 KiB, and offsets are
        # committed often enough that a restart replays little.
        producer_linger=config.producer_linger,
        producer_max_batch_size=config.producer_batch_bytes,
        broker_commit_interval=config.commit_interval,
    )


class RetentionApp:
    """Builds one Faust app for one :class:`Config`."""

    def __init__(self, config: Config, *, wall_clock: WallClock = system_clock) -> None:
        check_version()
        self.config = config
        self.wall_clock = wall_clock
        topics = config.topics
        self.app = faust.App(config.app_id, **faust_settings(config))
        raw: _RawTopicOptions = {
            "key_type": bytes,
            "value_type": bytes,
            "key_serializer": "raw",
            "value_serializer": "raw",
        }
        self.input_topic = self.app.topic(*topics.inputs(), **raw)
        self.customer_topic = self.app.topic(
            topics.customer_events, partitions=config.partitions, **raw
        )
        self.outputs = {
            name: self.app.topic(name, **raw)
            for name in (*topics.outputs(), topics.customer_events)
        }
        self.table = self.app.Table(
            "customers",
            partitions=config.partitions,
            key_type=bytes,
            value_type=bytes,
        )
        self.store = TableStore(self.table)
        self.ingest = IngestProcessor(
            customer_topic=topics.customer_events,
            dlq_topic=topics.dlq,
            customer_partitions=config.partitions,
            max_message_bytes=config.max_message_bytes,
            future_tolerance=config.future_tolerance,
            wall_clock=wall_clock,
        )
        self.processor = CustomerProcessor(
            Engine(config.core),
            mode=config.clock,
            sources=input_sources(topics.inputs(), config.partitions),
            nudges_topic=topics.nudges,
            decisions_topic=topics.decisions,
            outcomes_topic=topics.outcomes,
            dlq_topic=topics.dlq,
            internal_topic=topics.customer_events,
            wall_clock=wall_clock,
        )
        # Delivered nudges by (UTC date of due time, rule, step), since start.
        self.triggers_by_day: Counter[tuple[str, str, int]] = Counter()
        self.metrics = Metrics(self)
        self.readmodel = ReadModelWriter(
            connect=lambda: connect(config),
            prefix=config.redis_prefix,
            engine=self.processor.engine,
            wall_clock=wall_clock,
            owned=self.owned_partitions,
            ready=self.is_ready,
            scan=self.store.scan,
        )
        self.fault = FaultInjector.from_env()
        self._in_batch = False  # the customers agent is inside a batch
        self._revoked: set[int] = set()  # revoked while it was
        self._partitioner = DefaultPartitioner()
        self._partitions = list(range(config.partitions))
        self._wire()
        if config.web_enabled:
            from streams.web.views import register

            register(self)

    # --- what the web views and the read model ask --------------------------------

    @property
    def canonical_url(self) -> str:
        return str(self.app.conf.canonical_url)

    @property
    def web_address(self) -> str:
        host = self.config.web_advertised_host or self.config.web_host
        return f"{host}:{self.config.web_port}"

    def is_recovering(self) -> bool:
        tables: Any = self.app.tables  # TableManagerT does not declare .recovery
        recovery = tables.recovery
        return bool(recovery.in_recovery)

    def is_ready(self) -> bool:
        """Table recovery has completed (at least once, and is not running again)."""
        tables: Any = self.app.tables
        recovery = tables.recovery
        return bool(recovery.completed.is_set() and not recovery.in_recovery)

    def owned_partitions(self) -> set[int]:
        """Customer partitions actively assigned to this worker."""
        name = self.config.topics.customer_events
        try:
            actives = self.app.assignor.assigned_actives()
        except Exception:  # no assignment yet
            return set()
        return {tp.partition for tp in actives if tp.topic == name}

    def partition_of(self, customer_id: str) -> int:
        """The customer's partition: where ingest's producer sent its events.

        Ingest bundles each event into the partition this returns (murmur2 of
        ``customer_id``, as a keyed send with the default partitioner would pick),
        and the table row ``c/<id>`` lives in the changelog partition of the
        message that wrote it, so it is this hash that counts, not the table key's.
        """
        parts = self._partitions
        return int(self._partitioner(customer_id.encode(), parts, parts))

    def owner_of(self, customer_id: str) -> str | None:
        """The canonical URL of the worker owning the customer, if known."""
        partition = self.partition_of(customer_id)
        changelog = self.table.changelog_topic.get_topic_name()
        try:
            hosts = self.app.router.table_metadata(self.table.name)
        except Exception:  # no assignment yet
            return None
        for url, topics in hosts.items():
            if partition in topics.get(changelog, ()):
                return str(url)
        return None

    def consumer_lag(self) -> dict[str, int]:
        """Messages not yet committed, per topic, on this worker's partitions."""
        watched = {*self.config.topics.inputs(), self.config.topics.customer_events}
        lag: Counter[str] = Counter()
        try:
            consumer: Any = self.app.consumer  # _committed_offset is not on ConsumerT
            assignment = consumer.assignment()
        except Exception:  # not started yet
            return {}
        committed_at = committed_offsets(consumer)
        for tp in assignment:
            if tp.topic not in watched:
                continue
            try:
                high = consumer.highwater(tp)
            except Exception:  # no fetch position yet
                continue
            if high is None:
                continue
            committed = committed_at.get(tp) or 0
            lag[tp.topic] += max(0, int(high) - int(committed))
        return dict(lag)

    def _wire(self) -> None:
        app, cfg = self.app, self.config
        batch, within = cfg.batch_max, cfg.batch_within

        @app.agent(self.input_topic, name="ingest")
        @crash_only
        async def ingest(stream: Any) -> None:
            await self._start_batching()
            handle = self.ingest.handle
            fault = self.fault.hit
            send = app.producer.send
            customer_topic = cfg.topics.customer_events
            async for events in stream.take_events(batch, within=within):
                acks: list[Awaitable[Any]] = []
                # Valid events and clock markers, per customer partition, in order:
                # one bundle each per batch (agents/messages.py).
                routed: dict[int, list[bytes]] = {}
                for event in events:
                    m = event.message
                    outputs, controls = handle(event.value, m.topic, m.partition, m.offset)
                    for out in outputs:
                        if out.topic == customer_topic:
                            routed.setdefault(self.partition_of(out.key), []).append(out.value)
                        else:
                            acks.append(
                                await send(out.topic, out.key.encode(), out.value, None, None, None)
                            )
                    for partition, payload in controls:
                        routed.setdefault(partition, []).append(payload)
                for partition, items in routed.items():
                    for record in bundles(items):
                        acks.append(
                            await send(customer_topic, b"__bundle__", record, partition, None, None)
                        )
                # A failed send raises here and stops the agent (crash_only): the
                # batch is not acked, so it is consumed again after the restart.
                await asyncio.gather(*acks)
                fault("ingest_after_sends")

        @app.agent(self.customer_topic, name="customers")
        @crash_only
        async def customers(stream: Any) -> None:
            await self._start_batching()
            async for events in stream.take_events(batch, within=within):
                last: dict[int, Any] = {}
                for event in events:
                    last[event.message.partition] = event
                groups = group_by_partition(
                    [(e.message.partition, e.message.offset, e.value) for e in events]
                )
                changelog: list[Any] = []
                self._in_batch = True
                try:
                    for partition, messages in groups.items():
                        await self._process(partition, messages, last[partition], changelog)
                    # Every row of the batch is in the changelog before its events
                    # are acked (and so before their offsets can be committed).
                    await asyncio.gather(*changelog)
                finally:
                    self._in_batch = False
                    self._apply_revoked()

        # Faust's App.timer returns a bare Callable, so the decorator is untyped.
        @app.timer(interval=cfg.tick_interval, on_leader=True)  # type: ignore[untyped-decorator]
        async def tick() -> None:
            if cfg.clock != "wall":
                return
            payload = dumps({"type": "tick", "now": self.wall_clock()})
            for partition in range(cfg.partitions):
                await self.customer_topic.send(key=b"__tick__", value=payload, partition=partition)

        # Signal.connect is untyped too, and mode types every handler as
        # (sender, *args, signal=..., **kwargs): it cannot express that
        # on_partitions_revoked always sends exactly one ``revoked`` argument.
        @app.on_partitions_revoked.connect  # type: ignore[untyped-decorator,arg-type]
        async def on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
            name = cfg.topics.customer_events
            # A batch in flight finishes first, as Faust lets an event in flight
            # finish: dropping its partition's runtime mid-batch would drop the
            # rest of its queued work (events the batch then acks).
            self._revoked.update(tp.partition for tp in revoked if tp.topic == name)
            if not self._in_batch:
                self._apply_revoked()

        @app.task  # type: ignore[untyped-decorator]
        async def read_model() -> None:
            await self.readmodel.run()

    def _apply_revoked(self) -> None:
        gone, self._revoked = self._revoked, set()
        if gone:
            self.processor.revoke(gone)
            self.readmodel.revoke(gone)

    async def _start_batching(self) -> None:
        """Once per agent start: output topics exist, the producer buffer is sized."""
        # Outputs go through the producer directly (no Topic.send), so declare them.
        for topic in self.outputs.values():
            await topic.maybe_declare()
        # A batch's changelog rows sit in Faust's producer buffer until its sender task
        # drains them; above the limit the conductor stops to flush on every message.
        set_producer_buffer_limit(self.app, max(100, 4 * self.config.batch_max))

    async def _process(
        self, partition: int, messages: list[Any], event: Any, changelog: list[Any]
    ) -> None:
        """One partition's share of a batch, in slices of bounded work.

        Per slice: send every output, await the acknowledgements once, then write
        the table rows.  An output is acknowledged before the state that produced
        it is written, so a crash in between replays the events and re-fires with
        the same trigger_id (a duplicate), never a lost decision.  The rows'
        changelog acks are collected in ``changelog``; the batch awaits them
        before its events are acked.  Between slices the loop gets control back,
        so a big clock advance does not starve it.
        """
        proc, store = self.processor, self.store
        send = self.app.producer.send
        mark = self.readmodel.mark
        with event_context(event):  # reads and writes go to this partition
            proc.feed(partition, messages, store)
            while proc.has_work(partition):
                started = time.perf_counter()
                result = proc.step(partition, store)
                if result.outputs:
                    acks = [
                        await send(o.topic, o.key.encode(), o.value, None, None, None)
                        for o in result.outputs
                    ]
                    await asyncio.gather(*acks)
                    self.triggers_by_day.update(result.delivered)
                    self.fault.hit("after_sends")
                rows = [(k.encode(), v) for k, v in result.writes.items()]
                changelog.extend(write_rows(self.table, partition, rows))
                for key, value in result.writes.items():
                    if key.startswith("c/"):
                        # Only remembered here; the read-model task writes Redis.
                        mark(partition, key[2:], value)
                if result.outputs:  # count the slices that fired, as after_sends does
                    self.fault.hit("after_writes")
                self.metrics.tick_duration.observe(time.perf_counter() - started)
                if proc.has_work(partition):
                    await asyncio.sleep(0)
