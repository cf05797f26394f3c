"""Topic names as the CLI takes them (streams/config/topics.py)."""

from __future__ import annotations

from streams.config import Config


def test_the_cli_takes_short_topic_names_with_the_prefix_applied() -> None:
    topics = Config(topic_prefix="acme.").topics
    assert topics.resolve("nudges") == "acme.retention.nudges"
    assert topics.resolve("customer-events") == topics.resolve("customer_events")
    assert topics.resolve("customer_events") == "acme.retention.customer-events"
    assert topics.resolve("some.other.topic") == "some.other.topic"
