"""Prometheus metrics of one worker, served at ``/metrics``.

Counters live where they are counted (the ingest processor, the customer
processor, the read-model writer) as plain integers, so the hot path pays for an
integer increment, not a Prometheus client call.  :class:`WorkerCollector` turns
the worker's :class:`streams.observe.Snapshot` into metric families at scrape
time.  Each app gets its own ``CollectorRegistry`` so several apps in one process
(tests) never clash.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streams.observe import Snapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Handling one clock message fires every customer that fell due; buckets span a
# quiet tick (~1 ms) to a large catch-up after a long pause.
TICK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class WorkerCollector(Collector):
    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot()
        rm = s.read_model

        accepted = CounterMetricFamily(
            "retention_events_accepted",
            "Input messages that passed validation and went to the customer topic",
        )
        accepted.add_metric([], s.accepted)
        yield accepted

        processed = CounterMetricFamily(
            "retention_events_processed",
            "Events taken into customer state, by result",
            labels=["result"],
        )
        processed.add_metric(["applied"], s.events)
        processed.add_metric(["duplicate"], s.duplicates)
        yield processed

        dead = CounterMetricFamily(
            "retention_dead_letters", "Input messages sent to the DLQ, by code", labels=["code"]
        )
        codes = Counter(s.ingest_dead_letters) + Counter(s.customer_dead_letters)
        for code, n in sorted(codes.items()):
            dead.add_metric([code], n)
        yield dead

        late = CounterMetricFamily(
            "retention_late_events",
            "Events that arrived after the stream clock had passed them, by input topic",
            labels=["topic"],
        )
        for topic, n in sorted(s.late.items()):
            late.add_metric([topic], n)
        yield late

        clock = GaugeMetricFamily(
            "retention_stream_clock_seconds",
            "Stream clock (watermark) of each owned customer partition, Unix seconds",
            labels=["partition"],
        )
        stalled = GaugeMetricFamily(
            "retention_stream_clock_stalled_seconds",
            "Wall-clock seconds since the partition's stream clock last moved",
            labels=["partition"],
        )
        for c in s.clocks:
            if c.advanced_at:
                clock.add_metric([str(c.partition)], c.watermark / 1e6)
                stalled.add_metric([str(c.partition)], max(0, s.at - c.advanced_at) / 1e6)
        yield clock
        yield stalled

        decisions = CounterMetricFamily(
            "retention_decisions",
            "Rule firings by rule, step and outcome (delivered or a suppression reason)",
            labels=["rule", "step", "outcome"],
        )
        for (rule, step, outcome), n in sorted(s.decisions.items()):
            decisions.add_metric([rule, str(step), outcome], n)
        yield decisions

        due = GaugeMetricFamily(
            "retention_due_index_size", "Customers waiting in the due index of owned partitions"
        )
        due.add_metric([], sum(c.due for c in s.clocks))
        yield due

        owned = GaugeMetricFamily("retention_partitions_owned", "Customer partitions owned")
        owned.add_metric([], len(s.owned))
        yield owned

        lag = GaugeMetricFamily(
            "retention_consumer_lag",
            "Messages not yet committed on the partitions this worker consumes",
            labels=["topic"],
        )
        for topic, n in sorted(s.lag.items()):
            lag.add_metric([topic], n)
        yield lag

        ready = GaugeMetricFamily("retention_ready", "1 when table recovery is complete")
        ready.add_metric([], 1.0 if s.ready else 0.0)
        yield ready

        rm_lag = GaugeMetricFamily(
            "retention_read_model_lag", "Customers whose newest state is not in Redis yet"
        )
        rm_lag.add_metric([], rm.lag)
        yield rm_lag

        rm_age = GaugeMetricFamily(
            "retention_read_model_lag_seconds",
            "Age of the oldest customer change not yet written to Redis",
        )
        rm_age.add_metric([], rm.oldest_age)
        yield rm_age

        rm_resync = GaugeMetricFamily(
            "retention_read_model_resync_partitions",
            "Owned partitions waiting to be resynced to Redis from the table",
        )
        rm_resync.add_metric([], rm.resync_partitions)
        yield rm_resync

        rm_up = GaugeMetricFamily(
            "retention_read_model_redis_up", "1 when the last Redis write succeeded"
        )
        rm_up.add_metric([], 1.0 if rm.redis_up else 0.0)
        yield rm_up

        rm_writes = CounterMetricFamily(
            "retention_read_model_writes",
            "Customer hashes sent to Redis, by result (skipped: Redis already as new)",
            labels=["result"],
        )
        rm_writes.add_metric(["written"], rm.written)
        rm_writes.add_metric(["skipped"], rm.skipped)
        yield rm_writes

        rm_errors = CounterMetricFamily(
            "retention_read_model_errors", "Failed read-model flushes (Redis errors)"
        )
        rm_errors.add_metric([], rm.errors)
        yield rm_errors


class Metrics:
    """The registry of one app and the instruments observed directly."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(WorkerCollector(snapshot))
        self.tick_duration = Histogram(
            "retention_tick_duration_seconds",
            "Time to handle one clock message (tick or advance), firing and publishing "
            "what fell due",
            buckets=TICK_BUCKETS,
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
