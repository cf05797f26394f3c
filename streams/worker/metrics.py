"""Prometheus metrics of one worker, served at ``/metrics``.

Counters live where they are counted (the ingest processor, the customer
processor, the read-model writer) as plain integers, so the hot path pays for an
integer increment, not a Prometheus client call.  :class:`WorkerCollector` turns
the worker's :class:`streams.worker.observe.Snapshot` into metric families at scrape
time.  Each app gets its own ``CollectorRegistry`` so several apps in one process
(tests) never clash.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agents.core.timeutil import LENIENT_FORMS
from streams.worker.observe import Snapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Handling one clock message fires every customer that fell due; buckets span a
# quiet tick (~1 ms) to a large catch-up after a long pause.
TICK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


Family = type[CounterMetricFamily] | type[GaugeMetricFamily]


def family(
    kind: Family, name: str, doc: str, samples: Iterable[tuple[Sequence[str], float]], *labels: str
) -> Metric:
    """One metric family with its samples ((label values, value) pairs)."""
    out = kind(name, doc, labels=list(labels))
    for values, value in samples:
        out.add_metric(list(values), value)
    return out


def one(value: float) -> list[tuple[Sequence[str], float]]:
    """The single sample of an unlabelled family."""
    return [((), value)]


def by(counts: Mapping[str, int]) -> list[tuple[Sequence[str], float]]:
    """One sample per key, sorted."""
    return [((key,), n) for key, n in sorted(counts.items())]


class WorkerCollector(Collector):
    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot()
        rm = s.read_model
        counter, gauge = CounterMetricFamily, GaugeMetricFamily
        moved = [c for c in s.clocks if c.advanced_at]
        seen = [c for c in s.clocks if c.since]
        dead = Counter(s.ingest_dead_letters) + Counter(s.customer_dead_letters)

        yield family(
            counter,
            "retention_events_accepted",
            "Input messages that passed validation and went to the customer topic",
            one(s.accepted),
        )
        yield family(
            counter,
            "retention_events_processed",
            "Events taken into customer state, by result",
            [(("applied",), s.events), (("duplicate",), s.duplicates)],
            "result",
        )
        yield family(
            counter,
            "retention_dead_letters",
            "Input messages sent to the DLQ, by code",
            by(dead),
            "code",
        )
        yield family(
            counter,
            "retention_lenient_timestamps",
            "Accepted events whose occurred_at a later version refuses (space for T, :60), by form",
            [((f,), s.lenient_timestamps.get(f, 0)) for f in LENIENT_FORMS],
            "form",
        )
        yield family(
            counter,
            "retention_late_events",
            "Events that arrived after the stream clock had passed them, by input topic",
            by(s.late),
            "topic",
        )
        yield family(
            gauge,
            "retention_stream_clock_seconds",
            "Stream clock (watermark) of each owned customer partition, Unix seconds",
            [((str(c.partition),), c.watermark / 1e6) for c in moved],
            "partition",
        )
        # From the first event on, so a clock that never starts is seen (docs/time.md "Time").
        yield family(
            gauge,
            "retention_stream_clock_stalled_seconds",
            "Wall-clock seconds since the partition's stream clock last moved "
            "(never moved: since its first event)",
            [((str(c.partition),), max(0, s.at - c.since) / 1e6) for c in seen],
            "partition",
        )
        yield family(
            gauge,
            "retention_stream_clock_stuck_seconds",
            "Wall-clock seconds the partition's stream clock has not moved while events "
            "wait on it (0 once it moves: an idle partition is not stuck)",
            [((str(c.partition),), c.stuck / 1e6) for c in seen],
            "partition",
        )
        yield family(
            gauge,
            "retention_partition_mismatch",
            "1 for a topic whose partition count is not RETENTION_PARTITIONS (start-up check)",
            [((t,), 1.0) for t in sorted(s.partition_warnings)],
            "topic",
        )
        yield family(
            counter,
            "retention_decisions",
            "Rule firings by rule, step and outcome (delivered or a suppression reason)",
            [
                ((r, str(st), o), n)
                for (r, st, o), n in sorted(
                    {**dict.fromkeys(s.decision_series, 0), **s.decisions}.items()
                )
            ],
            "rule",
            "step",
            "outcome",
        )
        yield family(
            gauge,
            "retention_due_index_size",
            "Customers waiting in the due index of owned partitions",
            one(sum(c.due for c in s.clocks)),
        )
        yield family(
            gauge, "retention_partitions_owned", "Customer partitions owned", one(len(s.owned))
        )
        yield family(
            gauge,
            "retention_consumer_lag",
            "Messages not yet committed on the partitions this worker consumes",
            by(s.lag),
            "topic",
        )
        yield family(
            gauge,
            "retention_ready",
            "1 when table recovery is complete",
            one(1.0 if s.ready else 0.0),
        )
        yield family(
            gauge,
            "retention_read_model_lag",
            "Customers whose newest state is not in Redis yet",
            one(rm.lag),
        )
        yield family(
            gauge,
            "retention_read_model_lag_seconds",
            "Age of the oldest customer change not yet written to Redis",
            one(rm.oldest_age),
        )
        yield family(
            gauge,
            "retention_read_model_resync_partitions",
            "Owned partitions waiting to be resynced to Redis from the table",
            one(rm.resync_partitions),
        )
        yield family(
            gauge,
            "retention_read_model_redis_up",
            "1 when the last Redis write succeeded",
            one(1.0 if rm.redis_up else 0.0),
        )
        yield family(
            counter,
            "retention_read_model_writes",
            "Customer hashes sent to Redis, by result (skipped: Redis already as new)",
            [(("written",), rm.written), (("skipped",), rm.skipped)],
            "result",
        )
        yield family(
            counter,
            "retention_read_model_errors",
            "Failed read-model flushes (Redis errors)",
            one(rm.errors),
        )


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
