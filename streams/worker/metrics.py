"""Prometheus metrics of one worker, served at ``/metrics``.

Counters live where they are counted (the ingest processor, the customer
processor, the read-model writer) as plain integers, so the hot path pays for an
integer increment, not a Prometheus client call.  Every family is declared once,
name, type, help and labels, in :data:`METRICS`, with how its samples are read
from the worker's :class:`streams.worker.observe.Snapshot`; :class:`WorkerCollector`
turns a snapshot into those families at scrape time.  Each app gets its own
``CollectorRegistry`` so several apps in one process (tests) never clash.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agents.core.timeutil import LENIENT_FORMS, iso
from agents.core.zones import TZDATA_VERSION
from streams.worker.observe import PartitionClock, Snapshot

if TYPE_CHECKING:
    from agents.core.rules.model import Rule

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Handling one clock message fires every customer that fell due; buckets span a
# quiet tick (~1 ms) to a large catch-up after a long pause.
TICK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


Samples = Iterable[tuple[Sequence[str], float]]
Family = type[CounterMetricFamily] | type[GaugeMetricFamily]
KINDS: dict[str, Family] = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily}


@dataclass(frozen=True, slots=True)
class MetricDef:
    """One metric family as /metrics exports it, declared once (docs/operations.md,
    "Metrics", lists the same families: tests/unit/test_readme.py).

    ``samples`` reads its (label values, value) pairs from a snapshot at scrape
    time; a family without it (the histogram) is observed directly."""

    name: str  # a counter's samples get ``_total`` appended in the exposition
    kind: Literal["counter", "gauge", "histogram"]
    help: str
    labels: tuple[str, ...] = ()
    samples: Callable[[Snapshot], Samples] | None = None
    buckets: tuple[float, ...] = ()


def family(kind: Family, name: str, doc: str, samples: Samples, *labels: str) -> Metric:
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


def _dead_letters(s: Snapshot) -> Samples:
    return by(Counter(s.ingest_dead_letters) + Counter(s.customer_dead_letters))


def decision_series(
    rules: Iterable[Rule], outcomes: tuple[str, ...], window_outcomes: tuple[str, ...]
) -> tuple[tuple[str, int, str], ...]:
    """Every (rule, step, outcome) these rules can decide: ``outcomes`` for each,
    and ``window_outcomes`` too for a rule with a send window (docs/send-windows.md
    "Outputs"), so a rule without one exports no such series."""
    return tuple(
        (rule.name, step, outcome)
        for rule in rules
        for step in range(1, len(rule.steps) + 1)
        for outcome in (outcomes if rule.send_window is None else outcomes + window_outcomes)
    )


def _decisions(s: Snapshot) -> Samples:
    # Every series the ladders can produce, from 0 (observe.Snapshot.decision_series).
    counts = {**dict.fromkeys(s.decision_series, 0), **s.decisions}
    return [((r, str(step), o), n) for (r, step, o), n in sorted(counts.items())]


def _deferred(s: Snapshot) -> Samples:
    # From 0 for every rule with a send window, like the decisions.
    counts = {**dict.fromkeys(s.windowed_rules, 0), **s.deferred}
    return by(counts)


def _version_info(s: Snapshot) -> Samples:
    """1 for the version in force on any owned partition, 0 for a scheduled one."""
    shown: dict[tuple[str, str], float] = {}
    for part in s.rules:
        for v in part.versions:
            if v.in_force or v.scheduled:
                key = (v.id, "" if v.effective_at is None else iso(v.effective_at))
                shown[key] = max(shown.get(key, 0.0), 1.0 if v.in_force else 0.0)
    return sorted(shown.items())


def _per_clock(s: Snapshot, value: Callable[[PartitionClock], float], moved: bool) -> Samples:
    """One sample per partition clock that has moved (``moved``) or seen an event."""
    clocks = [c for c in s.clocks if (c.advanced_at if moved else c.since)]
    return [((str(c.partition),), value(c)) for c in clocks]


# Every family /metrics renders, in the order it renders them.
METRICS: tuple[MetricDef, ...] = (
    MetricDef(
        "retention_events_accepted",
        "counter",
        "Input messages that passed validation and went to the customer topic",
        samples=lambda s: one(s.accepted),
    ),
    MetricDef(
        "retention_events_processed",
        "counter",
        "Events taken into customer state, by result",
        ("result",),
        lambda s: [(("applied",), s.events), (("duplicate",), s.duplicates)],
    ),
    MetricDef(
        "retention_dead_letters",
        "counter",
        "Input messages sent to the DLQ, by code",
        ("code",),
        _dead_letters,
    ),
    MetricDef(
        "retention_lenient_timestamps",
        "counter",
        "Accepted events whose occurred_at a later version refuses (space for T, :60), by form",
        ("form",),
        lambda s: [((f,), s.lenient_timestamps.get(f, 0)) for f in LENIENT_FORMS],
    ),
    MetricDef(
        "retention_invalid_timezones",
        "counter",
        "Accepted events whose timezone was ignored (not a zone the pinned tzdata knows)",
        samples=lambda s: one(s.invalid_timezones),
    ),
    MetricDef(
        "retention_tzdata_info",
        "gauge",
        "1, labelled with the IANA release of the pinned tzdata every zone is read from",
        ("version",),
        lambda s: [((TZDATA_VERSION,), 1)],
    ),
    MetricDef(
        "retention_late_events",
        "counter",
        "Events that arrived after the stream clock had passed them, by input topic",
        ("topic",),
        lambda s: by(s.late),
    ),
    MetricDef(
        "retention_stream_clock_seconds",
        "gauge",
        "Stream clock (watermark) of each owned customer partition, Unix seconds",
        ("partition",),
        lambda s: _per_clock(s, lambda c: c.watermark / 1e6, moved=True),
    ),
    # From the first event on, so a clock that never starts is seen (docs/time.md "Time").
    MetricDef(
        "retention_stream_clock_stalled_seconds",
        "gauge",
        "Wall-clock seconds since the partition's stream clock last moved "
        "(never moved: since its first event)",
        ("partition",),
        lambda s: _per_clock(s, lambda c: max(0, s.at - c.since) / 1e6, moved=False),
    ),
    MetricDef(
        "retention_stream_clock_stuck_seconds",
        "gauge",
        "Wall-clock seconds the partition's stream clock has not moved while events "
        "wait on it (0 once it moves: an idle partition is not stuck)",
        ("partition",),
        lambda s: _per_clock(s, lambda c: c.stuck / 1e6, moved=False),
    ),
    MetricDef(
        "retention_partition_mismatch",
        "gauge",
        "1 for a topic whose partition count is not RETENTION_PARTITIONS (start-up check)",
        ("topic",),
        lambda s: [((t,), 1.0) for t in sorted(s.partition_warnings)],
    ),
    MetricDef(
        "retention_decisions",
        "counter",
        "Rule firings by rule, step and outcome (delivered or a suppression reason)",
        ("rule", "step", "outcome"),
        _decisions,
    ),
    MetricDef(
        "retention_deferred_firings",
        "counter",
        "Firings that waited for their rule's send window, counted when decided (any "
        "outcome), by rule",
        ("rule",),
        _deferred,
    ),
    MetricDef(
        "retention_rules_late",
        "counter",
        "Rules versions a partition learned of after its clock had passed their effective "
        "time (applied at its clock + 1 µs instead)",
        samples=lambda s: one(s.rules_late),
    ),
    MetricDef(
        "retention_rules_version_info",
        "gauge",
        "1 for the rules version in force on owned partitions, 0 for a scheduled one "
        "(effective_at empty: the seed)",
        ("version", "effective_at"),
        _version_info,
    ),
    MetricDef(
        "retention_rules_versions",
        "gauge",
        "Rules versions kept by owned partitions (in force, pinned-to and scheduled)",
        samples=lambda s: one(len({v.id for part in s.rules for v in part.versions})),
    ),
    MetricDef(
        "retention_due_index_size",
        "gauge",
        "Customers waiting in the due index of owned partitions",
        samples=lambda s: one(sum(c.due for c in s.clocks)),
    ),
    MetricDef(
        "retention_partitions_owned",
        "gauge",
        "Customer partitions owned",
        samples=lambda s: one(len(s.owned)),
    ),
    MetricDef(
        "retention_consumer_lag",
        "gauge",
        "Messages not yet committed on the partitions this worker consumes",
        ("topic",),
        lambda s: by(s.lag),
    ),
    MetricDef(
        "retention_ready",
        "gauge",
        "1 when table recovery is complete",
        samples=lambda s: one(1.0 if s.ready else 0.0),
    ),
    MetricDef(
        "retention_read_model_lag",
        "gauge",
        "Customers whose newest state is not in Redis yet",
        samples=lambda s: one(s.read_model.lag),
    ),
    MetricDef(
        "retention_read_model_lag_seconds",
        "gauge",
        "Age of the oldest customer change not yet written to Redis",
        samples=lambda s: one(s.read_model.oldest_age),
    ),
    MetricDef(
        "retention_read_model_resync_partitions",
        "gauge",
        "Owned partitions waiting to be resynced to Redis from the table",
        samples=lambda s: one(s.read_model.resync_partitions),
    ),
    MetricDef(
        "retention_read_model_redis_up",
        "gauge",
        "1 when the last Redis write succeeded",
        samples=lambda s: one(1.0 if s.read_model.redis_up else 0.0),
    ),
    MetricDef(
        "retention_read_model_writes",
        "counter",
        "Customer hashes sent to Redis, by result (skipped: Redis already as new)",
        ("result",),
        lambda s: [(("written",), s.read_model.written), (("skipped",), s.read_model.skipped)],
    ),
    MetricDef(
        "retention_read_model_errors",
        "counter",
        "Failed read-model flushes (Redis errors)",
        samples=lambda s: one(s.read_model.errors),
    ),
    # Observed by the customers agent as it handles each clock message.
    MetricDef(
        "retention_tick_duration_seconds",
        "histogram",
        "Time to handle one clock message (tick or advance), firing and publishing what fell due",
        buckets=TICK_BUCKETS,
    ),
)
TICK_DURATION = next(m for m in METRICS if m.name == "retention_tick_duration_seconds")


class WorkerCollector(Collector):
    """The snapshot families of :data:`METRICS`, read from a new snapshot per scrape."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot()
        for m in METRICS:
            if m.samples is not None:
                yield family(KINDS[m.kind], m.name, m.help, m.samples(s), *m.labels)


class Metrics:
    """The registry of one app and the instruments observed directly."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(WorkerCollector(snapshot))
        tick = TICK_DURATION
        self.tick_duration = Histogram(
            tick.name, tick.help, tick.labels, buckets=tick.buckets, registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
