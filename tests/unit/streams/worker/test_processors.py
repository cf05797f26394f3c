"""streams.worker.processors: the worker and ``python -m streams.bench_core`` run the same
processors, wired from the configuration."""

from __future__ import annotations

from dataclasses import replace

from agents.core.clock import system_clock
from streams.config import Config, load_config
from streams.worker.processors import build_processors


def test_the_processors_follow_the_configuration() -> None:
    config = load_config(
        {
            "RETENTION_TOPIC_PREFIX": "t1.",
            "RETENTION_PARTITIONS": "2",
            "RETENTION_CLOCK": "stream",
            "RETENTION_FUTURE_TOLERANCE": "PT1H",
            "RETENTION_FREQUENCY_CAP": "5",
        },
        use_stack_file=False,
    )
    ingest, customer = build_processors(config, system_clock)
    topics = config.topics
    assert topics.customer_events.startswith("t1.")
    assert (ingest.customer_topic, ingest.dlq_topic) == (topics.customer_events, topics.dlq)
    assert ingest.customer_partitions == 2
    assert ingest.future_tolerance == customer.future_tolerance == 3600 * 10**6
    assert customer.mode == "stream"
    assert customer.engine.settings.frequency_cap == 5
    assert customer.internal_topic == topics.customer_events
    assert (customer.nudges_topic, customer.decisions_topic, customer.outcomes_topic) == (
        topics.nudges,
        topics.decisions,
        topics.outcomes,
    )
    # One clock source per input topic-partition: the stream clock's minimum.
    assert len(customer.sources) == 2 * len(topics.inputs())
    assert all(s.startswith("t1.") for s in customer.sources)


def test_the_worker_builds_its_processors_the_same_way() -> None:
    from streams.worker.app import RetentionApp

    config = replace(Config(), store="memory://", partitions=3, clock="stream")
    app = RetentionApp(config)
    ingest, customer = build_processors(config, system_clock)
    for name in ("customer_topic", "dlq_topic", "customer_partitions", "future_tolerance"):
        assert getattr(app.ingest, name) == getattr(ingest, name), name
    for name in ("mode", "sources", "internal_topic", "future_tolerance", "dlq_topic"):
        assert getattr(app.processor, name) == getattr(customer, name), name
    assert app.processor.engine.settings == customer.engine.settings


def test_the_worker_exports_a_decision_series_for_every_step_and_outcome() -> None:
    from agents.core.guardrails import OUTCOMES
    from streams.worker.app import RetentionApp

    config = replace(Config(), store="memory://", partitions=3, clock="stream")
    series = RetentionApp(config).snapshot().decision_series
    # 3 + 3 + 1 steps of the default ladders, each with every outcome.
    assert len(series) == 7 * len(OUTCOMES) == len(set(series))
    assert ("overdue", 1, "frequency_cap") in series
    assert ("inactivity", 3, "delivered") in series
