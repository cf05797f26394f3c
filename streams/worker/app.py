"""The worker's assembly: one Faust app with its topics, table, agents and views.

The agents (:mod:`agents.faust_agents`) only translate: bytes from Kafka go into
:class:`agents.ingest.IngestProcessor` and :class:`agents.customer.CustomerProcessor`;
what they return goes back out.  Faust and aiokafka internals are used only
through the pinned :mod:`streams.faust_adapter` and :mod:`streams.aiokafka_adapter`;
what metrics, summary and views read of the worker is a
:class:`streams.worker.observe.Snapshot` (docs/design.md, "Layout").
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from typing import Any, TypedDict

import aiohttp
import faust
import orjson
from aiokafka.partitioner import DefaultPartitioner

from agents.contract import CLOCK_KEY_PREFIX
from agents.core.clock import NEVER, StreamClock, WallClock, clock_mode, system_clock
from agents.core.engine import Engine
from agents.core.guardrails import OUTCOMES, WINDOW_OUTCOMES
from agents.core.rules.history import Version
from agents.core.timeutil import MICROS_PER_SECOND, iso
from agents.faust_agents import CustomerAgent, IngestAgent, Send, SendMany, crash_only
from agents.messages import CONTROL_ADVANCE, dumps
from agents.wire import tick_message
from streams.aiokafka_adapter import BatchSender, Record, guard_undecodable_batches
from streams.config import Config
from streams.faust_adapter import (
    TableStore,
    check_version,
    committed_offsets,
    kafka_producer,
    recovery_state,
    set_producer_buffer_limit,
    use_replaying_consumer,
)
from streams.worker.faults import FaultInjector
from streams.worker.faust_settings import faust_settings
from streams.worker.metrics import Metrics, decision_series
from streams.worker.observe import (
    PartitionClock,
    PartitionRows,
    PartitionRules,
    ReadModelStatus,
    RulesVersion,
    Snapshot,
)
from streams.worker.processors import build_processors
from streams.worker.readmodel import ReadModelWriter, connect

log = logging.getLogger(__name__)

# Seconds between looks for stream clocks newly stuck, each logged once (docs/time.md "Time").
CLOCK_CHECK_INTERVAL = 10.0
# Key of the heartbeat's control/advance records (inputs take any key): names them in a tail.
HEARTBEAT_KEY = b"__heartbeat__"


class _RawTopicOptions(TypedDict):
    """Keyword arguments for ``App.topic``: keys and values stay raw bytes."""

    key_type: type[bytes]
    value_type: type[bytes]
    key_serializer: str
    value_serializer: str


class RetentionApp:
    """Builds one Faust app (:attr:`faust_app`) for one :class:`Config`."""

    def __init__(
        self,
        config: Config,
        *,
        wall_clock: WallClock = system_clock,
        versions: Sequence[Version] = (),
    ) -> None:
        check_version()
        self.config = config
        self.wall_clock = wall_clock
        topics = config.topics
        self.faust_app = faust.App(config.app_id, **faust_settings(config))
        # Replays what a restart before the first commit would skip
        # (docs/crash-safety.md "A partition with no committed offset").
        use_replaying_consumer(self.faust_app)
        raw: _RawTopicOptions = {
            "key_type": bytes,
            "value_type": bytes,
            "key_serializer": "raw",
            "value_serializer": "raw",
        }
        self.input_topic = self.faust_app.topic(*topics.inputs(), **raw)
        self.customer_topic = self.faust_app.topic(
            topics.customer_events, partitions=config.partitions, **raw
        )
        self.outputs = {
            name: self.faust_app.topic(name, **raw)
            for name in (*topics.outputs(), topics.customer_events)
        }
        self.table = self.faust_app.Table(
            "customers",
            partitions=config.partitions,
            key_type=bytes,
            value_type=bytes,
        )
        self.store = TableStore(self.table)
        # ``versions``: the rules published after the seed, read from the rules topic
        # at start (streams.ops.registry); each partition adopts them.
        self.ingest, self.processor = build_processors(config, wall_clock, versions=versions)
        rules = self.processor.engine.rules  # the enabled rules, by priority
        self._decision_series = decision_series(rules, OUTCOMES, WINDOW_OUTCOMES)
        self._windowed_rules = tuple(r.name for r in rules if r.send_window is not None)
        self.metrics = Metrics(self.snapshot)
        self.readmodel = ReadModelWriter(
            connect=lambda: connect(config),
            prefix=config.redis_prefix,
            engine=self.processor.engine,
            engine_of=self.engine_for,
            wall_clock=wall_clock,
            owned=self.owned_partitions,
            ready=self.is_ready,
            scan=self.store.scan,
        )
        self.fault = FaultInjector.from_env()
        # Topic -> warning from the start-up partition-count check (streams.kafka).
        self.partition_warnings: dict[str, str] = {}
        self._stuck_logged: set[int] = set()  # partitions whose stuck clock was logged
        self._partitioner = DefaultPartitioner()
        self._partitions = list(range(config.partitions))
        # A batch of an input topic the consumer cannot decode becomes one dead
        # letter instead of crashing the worker (README "Inputs").
        self.undecodable = guard_undecodable_batches(topics.inputs())
        self.ingest_agent = IngestAgent(
            self.ingest,
            start=self._start_batching,
            partition_of=self.partition_of,
            fault=self.fault.hit,
            batch_max=config.batch_max,
            batch_within=config.batch_within,
            undecodable=self.undecodable,
        )
        self.customer_agent = CustomerAgent(
            self.processor,
            self.store,
            start=self._start_batch_sends,
            revoke=self._revoke,
            mark=self.readmodel.mark,
            observe_slice=self.metrics.tick_duration.observe,
            fault=self.fault.hit,
            batch_max=config.batch_max,
            batch_within=config.batch_within,
        )
        self._wire()
        if config.web_enabled:
            from streams.web.views import register

            register(self.faust_app, self)

    # --- what the web views, the summary and the read model ask -------------------------

    def engine_for(self, partition: int) -> Engine:
        """The engine of a customer partition: the rules versions it switched to
        (docs/rules.md "Changing rules"); the worker's own before it runs."""
        rt = self.processor.runtimes.get(partition)
        return rt.engine if rt is not None else self.processor.engine

    @property
    def engine(self) -> Engine:
        return self.processor.engine

    @property
    def http_client(self) -> aiohttp.ClientSession:
        client: aiohttp.ClientSession = self.faust_app.http_client
        return client

    @property
    def canonical_url(self) -> str:
        return str(self.faust_app.conf.canonical_url)

    @property
    def web_address(self) -> str:
        host = self.config.web_advertised_host or self.config.web_host
        return f"{host}:{self.config.web_port}"

    @property
    def triggers_by_day(self) -> Counter[tuple[str, str, int]]:
        """Delivered nudges by (UTC date of due time, rule, step), since start."""
        return self.customer_agent.triggers_by_day

    def is_ready(self) -> bool:
        """Table recovery has completed (at least once, and is not running again)."""
        completed, running = recovery_state(self.faust_app)
        return completed and not running

    def owned_partitions(self) -> set[int]:
        """Customer partitions actively assigned to this worker."""
        name = self.config.topics.customer_events
        try:
            actives = self.faust_app.assignor.assigned_actives()
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

    def owners(self) -> dict[str, list[int]]:
        """Canonical URL -> customer partitions, from Faust's table metadata."""
        changelog = self.table.changelog_topic.get_topic_name()
        try:
            hosts = self.faust_app.router.table_metadata(self.table.name)
        except Exception:  # no assignment yet
            return {}
        out = {str(url): sorted(t.get(changelog, ())) for url, t in hosts.items()}
        return {url: ps for url, ps in out.items() if ps}

    def owner_of(self, customer_id: str) -> str | None:
        """The canonical URL of the worker owning the customer, if known."""
        partition = self.partition_of(customer_id)
        for url, partitions in self.owners().items():
            if partition in partitions:
                return url
        return None

    def customer_row(self, customer_id: str) -> bytes | None:
        return self.store.get("c/" + customer_id)

    def partition_rows(self, partitions: Iterable[int]) -> list[PartitionRows]:
        return self.store.rows_for_thread(partitions)

    def metrics_text(self) -> bytes:
        return self.metrics.render()

    def consumer_lag(self) -> dict[str, int]:
        """Messages not yet committed, per topic, on this worker's partitions."""
        watched = {*self.config.topics.inputs(), self.config.topics.customer_events}
        lag: Counter[str] = Counter()
        try:
            consumer: Any = self.faust_app.consumer
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

    def snapshot(self) -> Snapshot:
        """The worker's counters, partitions and clocks now (streams.worker.observe)."""
        proc, ingest, rm = self.processor, self.ingest, self.readmodel
        completed, running = recovery_state(self.faust_app)
        owned = tuple(sorted(self.owned_partitions()))
        stream = clock_mode(self.config.clock).event_time
        now = self.wall_clock()
        return Snapshot(
            at=now,
            worker=self.web_address,
            url=self.canonical_url,
            clock_mode=self.config.clock,
            ready=completed and not running,
            recovering=running,
            owned=owned,
            accepted=ingest.accepted,
            events=proc.counters["events"],
            duplicates=proc.counters["duplicates"],
            outcomes=proc.counters["outcomes"],
            ingest_dead_letters=dict(ingest.dead_letters),
            customer_dead_letters=dict(proc.dead_letters),
            late=dict(proc.late),
            lenient_timestamps=dict(ingest.lenient_timestamps),
            invalid_timezones=ingest.invalid_timezones,
            decisions=dict(proc.decision_counts),
            decision_series=self._decision_series,
            decisions_by_version=dict(proc.version_counts),
            windowed_rules=self._windowed_rules,
            deferred=dict(proc.deferred_counts),
            send_hours=dict(proc.send_hours),
            triggers_by_day=dict(self.triggers_by_day),
            clocks=tuple(
                PartitionClock(
                    p,
                    rt.watermark,
                    rt.advanced_at,
                    len(rt.index),
                    since=rt.advanced_at or rt.first_event_at,
                    stuck=proc.stuck_for(rt, now),
                )
                for p, rt in sorted(proc.runtimes.items())
            ),
            watermarks=self._watermarks(owned) if stream else {},
            lag=self.consumer_lag(),
            read_model=ReadModelStatus(
                redis_up=rm.redis_up,
                lag=rm.lag,
                oldest_age=rm.oldest_age,
                resync_partitions=len(rm.resync),
                written=rm.written,
                skipped=rm.skipped,
                errors=rm.errors,
                last_flush_at=rm.last_flush_at,
            ),
            clock_warnings=tuple(proc.clock_warnings(self.config.clock_idle_timeout)),
            partition_warnings=dict(self.partition_warnings),
            rules=rules_snapshot(proc.rule_versions()),
            rules_late=proc.rules_late,
        )

    def _watermarks(self, owned: Iterable[int]) -> dict[int, int | None]:
        """Each owned partition's stream clock: the live one, else the stored one."""
        proc = self.processor
        out: dict[int, int | None] = {}
        for p in owned:
            rt = proc.runtimes.get(p)
            mark = rt.watermark if rt is not None else NEVER
            if mark <= NEVER:
                raw = self.store.get(CLOCK_KEY_PREFIX + str(p))
                if raw is not None:
                    lateness = proc.engine.settings.stream_allowed_lateness
                    clock = StreamClock.restore(proc.sources, lateness, orjson.loads(raw))
                    mark = clock.watermark()
            out[p] = mark if mark > NEVER else None
        return out

    # --- wiring ---------------------------------------------------------------------------

    def _wire(self) -> None:
        app, cfg = self.faust_app, self.config
        app.agent(self.input_topic, name="ingest")(crash_only("ingest", self.ingest_agent.run))
        app.agent(self.customer_topic, name="customers")(
            crash_only("customers", self.customer_agent.run)
        )

        # Faust's App.timer returns a bare Callable, so the decorator is untyped.
        @app.timer(interval=cfg.tick_interval, on_leader=True)  # type: ignore[untyped-decorator]
        async def tick() -> None:
            if clock_mode(cfg.clock).event_time:
                return
            payload = tick_message(self.wall_clock())
            for partition in range(cfg.partitions):
                await self.customer_topic.send(key=b"__tick__", value=payload, partition=partition)

        if clock_mode(cfg.clock).event_time:

            @app.timer(interval=CLOCK_CHECK_INTERVAL)  # type: ignore[untyped-decorator]
            async def watch_clocks() -> None:
                self.log_stuck_clocks()

        if clock_mode(cfg.clock).event_time and cfg.stream_heartbeat > 0:

            @app.timer(  # type: ignore[untyped-decorator]
                interval=cfg.stream_heartbeat / MICROS_PER_SECOND, on_leader=True
            )
            async def heartbeat() -> None:
                await self.send_heartbeat()

        # Signal.connect is untyped too, and mode types every handler as
        # (sender, *args, signal=..., **kwargs): it cannot express that
        # on_partitions_revoked always sends exactly one ``revoked`` argument.
        @app.on_partitions_revoked.connect  # type: ignore[untyped-decorator,arg-type]
        async def on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
            name = cfg.topics.customer_events
            self.customer_agent.partitions_revoked(
                tp.partition for tp in revoked if tp.topic == name
            )

        @app.task  # type: ignore[untyped-decorator]
        async def read_model() -> None:
            await self.readmodel.run()

    def log_stuck_clocks(self) -> None:
        """Log each stream clock once when it becomes stuck, and once when it moves again."""
        stuck = self.processor.stuck_clocks(self.config.clock_idle_timeout)
        for partition, warning in stuck.items():
            if partition not in self._stuck_logged:
                log.warning("%s", warning)
        for partition in sorted(self._stuck_logged - stuck.keys()):
            log.info("stream clock of partition %d is no longer stuck", partition)
        self._stuck_logged = set(stuck)

    def heartbeat_marker(self) -> bytes:
        """A ``control/advance`` to now minus the allowed lateness (docs/time.md "Heartbeat")."""
        lateness = self.engine.settings.stream_allowed_lateness
        return dumps({"schema": CONTROL_ADVANCE, "until": iso(self.wall_clock() - lateness)})

    async def send_heartbeat(self) -> None:
        """Send :meth:`heartbeat_marker` to every partition of every input topic.

        Producers that key by ``customer_id`` leave most input partitions of a
        customer partition silent, and its stream clock, the minimum over them all,
        would never start; each partition's marker comes back through ingest like a
        producer's.  Event time then follows the wall clock, one allowed lateness
        behind it, so this is for live deployments only.
        """
        value = self.heartbeat_marker()
        send: Send = self.faust_app.producer.send
        for topic in self.config.topics.inputs():
            for partition in range(self.config.partitions):
                try:
                    ack = await send(topic, HEARTBEAT_KEY, value, partition, None, None)
                    await ack
                except Exception as exc:  # e.g. a topic with fewer partitions (docs/time.md "Time")
                    log.warning("heartbeat to %s:%d failed: %s", topic, partition, exc)

    def _revoke(self, gone: set[int]) -> None:
        self.processor.revoke(gone)
        self.readmodel.revoke(gone)

    async def _start_batching(self) -> Send:
        """Once per agent start: output topics exist, the producer buffer is sized;
        returns the producer's send."""
        # Outputs go through the producer directly (no Topic.send), so declare them.
        for topic in self.outputs.values():
            await topic.maybe_declare()
        # A batch's changelog rows sit in Faust's producer buffer until its sender task
        # drains them; above the limit the conductor stops to flush on every message.
        set_producer_buffer_limit(self.faust_app, max(100, 4 * self.config.batch_max))
        send: Send = self.faust_app.producer.send
        return send

    async def _start_batch_sends(self) -> SendMany:
        """:meth:`_start_batching`, for the customers agent: a slice's outputs go as
        one record batch per topic partition (docs/performance.md)."""
        await self._start_batching()
        app = self.faust_app

        async def send_many(records: list[Record]) -> list[Awaitable[Any]]:
            batches = await BatchSender(kafka_producer(app)).send(records)
            return [b.ack for b in batches]

        return send_many


def rules_snapshot(
    by_partition: Mapping[int, Iterable[tuple[Version, bool, bool]]],
) -> tuple[PartitionRules, ...]:
    """:meth:`agents.customer.CustomerProcessor.rule_versions` as plain values."""
    return tuple(
        PartitionRules(
            p,
            tuple(
                RulesVersion(
                    v.id,
                    v.effective_at,
                    v.applied_at,
                    in_force,
                    scheduled,
                    tuple((r.name, r.version, r.on_change) for r in v.rules.rules),
                )
                for v, in_force, scheduled in versions
            ),
        )
        for p, versions in sorted(by_partition.items())
    )
