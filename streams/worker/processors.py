"""The two pure processors of one worker, wired from a :class:`Config`.

The worker (:mod:`streams.worker.app`) and the core benchmark (:mod:`streams.bench.core`)
build them here, so the benchmark measures the processors exactly as the worker
runs them: same engine settings, topics, sources, bounds and clock mode.  Nothing
of Faust or Kafka is imported (docs/design.md, "Layout").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from agents.core.clock import WallClock
from agents.core.engine import Engine
from agents.core.rules.history import Version
from agents.customer import CustomerProcessor, input_sources
from agents.ingest import IngestProcessor
from streams.config import Config


class Processors(NamedTuple):
    ingest: IngestProcessor
    customer: CustomerProcessor


def build_processors(
    config: Config,
    wall_clock: WallClock,
    sources: Iterable[str] | None = None,
    versions: Sequence[Version] = (),
) -> Processors:
    """Ingest and customer processors for ``config``'s topics, partition count and
    clock mode; both read ``wall_clock`` (the future-timestamp bound, wall ticks).
    ``sources``, the input partitions that move the stream clock, are every
    partition of every input topic unless given (the unit tests narrow them).
    ``versions`` are the rules versions published after the configured rules (the
    rules topic, docs/rules.md "Changing rules"); each partition adopts them."""
    topics = config.topics
    ingest = IngestProcessor(
        customer_topic=topics.customer_events,
        dlq_topic=topics.dlq,
        customer_partitions=config.partitions,
        max_message_bytes=config.max_message_bytes,
        future_tolerance=config.future_tolerance,
        wall_clock=wall_clock,
        min_event_time=config.min_event_time,
    )
    customer = CustomerProcessor(
        Engine(config.core),
        mode=config.clock,
        sources=input_sources(topics.inputs(), config.partitions) if sources is None else sources,
        nudges_topic=topics.nudges,
        decisions_topic=topics.decisions,
        outcomes_topic=topics.outcomes,
        dlq_topic=topics.dlq,
        internal_topic=topics.customer_events,
        wall_clock=wall_clock,
        future_tolerance=config.future_tolerance,
        min_event_time=config.min_event_time,
        versions=versions,
    )
    return Processors(ingest, customer)
