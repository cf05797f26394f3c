"""The start-up partition-count check's verdicts (streams.kafka.partition_mismatches)."""

from __future__ import annotations

from streams.config import Config
from streams.kafka import changelog_topics, partition_mismatches


def test_topics_with_the_configured_count_or_not_there_yet_are_fine() -> None:
    config = Config(partitions=4)
    counts = {t: 4 for t in (*config.topics.inputs(), config.topics.customer_events)}
    assert partition_mismatches(config, counts) == {}
    assert partition_mismatches(config, {}) == {}


def test_each_kind_of_mismatch_says_what_it_does_and_what_to_do() -> None:
    config = Config(partitions=4, topic_prefix="shop.")
    t = config.topics
    [changelog] = changelog_topics(config)
    counts = {t.purchases: 4, t.sessions: 2, t.consents: 6, t.customer_events: 3, changelog: 4}
    found = partition_mismatches(config, counts)
    assert sorted(found) == sorted([t.sessions, t.consents, t.customer_events])
    assert found[t.sessions].startswith(
        "topic shop.retention.sessions has 2 partitions, RETENTION_PARTITIONS is 4: "
    )
    assert "input partitions 2-3, which never send" in found[t.sessions]
    assert "no decision fires" in found[t.sessions]
    assert "partitions 4-5 come from no known input partition" in found[t.consents]
    assert "dead letters (invalid_internal_message)" in found[t.consents]
    assert "routed to 4 partitions" in found[t.customer_events]
