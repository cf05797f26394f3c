"""Topic names as the CLI takes them (streams/config/topics.py)."""

from __future__ import annotations

from agents.core.timeutil import MICROS_PER_SECOND
from streams.config import Config, load_config


def test_the_cli_takes_short_topic_names_with_the_prefix_applied() -> None:
    topics = Config(topic_prefix="acme.").topics
    assert topics.resolve("nudges") == "acme.retention.nudges"
    assert topics.resolve("customer-events") == topics.resolve("customer_events")
    assert topics.resolve("customer_events") == "acme.retention.customer-events"
    assert topics.resolve("some.other.topic") == "some.other.topic"


def test_the_rules_topic_is_created_with_the_others_but_is_no_input() -> None:
    # docs/rules.md "Changing rules": markers reach partitions through the inputs.
    topics = Config(topic_prefix="acme.").topics
    assert topics.rules == "acme.retention.rules"
    assert topics.rules in topics.all()
    assert topics.rules not in topics.inputs()
    assert topics.resolve("rules") == "acme.retention.rules"


def test_a_rules_change_needs_five_minutes_lead_by_default() -> None:
    assert Config().rules_lead == 300 * MICROS_PER_SECOND
    env = {"RETENTION_RULES_LEAD": "PT1H"}
    assert load_config(env, use_stack_file=False).rules_lead == 3600 * MICROS_PER_SECOND


def test_the_lifecycle_inputs_are_input_topics_with_the_prefix() -> None:
    # docs/lifecycle.md "Inputs": ingest reads them; each is a stream-clock source.
    topics = Config(topic_prefix="acme.").topics
    assert topics.inputs()[3:] == (
        "acme.retention.signups",
        "acme.retention.product_views",
        "acme.retention.carts",
        "acme.retention.order_cancellations",
    )
    assert set(topics.inputs()) <= set(topics.all())
    assert topics.resolve("product-views") == "acme.retention.product_views"
