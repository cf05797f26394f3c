"""The rules topic (docs/rules.md "Changing rules") as the worker creates it with the
others on the session's real broker: one partition, compacted, and no input."""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams.config import Config
from streams.kafka import ensure_topics, partition_counts
from streams.local.stack import StackInfo

pytestmark = pytest.mark.integration


async def test_the_rules_topic_is_created_with_one_compacted_partition(
    local_stack: StackInfo, unique_prefix: str
) -> None:
    config = Config(kafka=local_stack.kafka, topic_prefix=unique_prefix, partitions=3)
    topics = config.topics
    created = await ensure_topics(config)
    assert topics.rules in created and topics.rules not in topics.inputs()
    counts = await partition_counts(config, (topics.rules, topics.purchases))
    assert counts == {topics.rules: 1, topics.purchases: 3}
    admin = AIOKafkaAdminClient(bootstrap_servers=local_stack.kafka)
    await admin.start()
    try:
        (described,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topics.rules)]
        )
        (purchases,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topics.purchases)]
        )
    finally:
        await admin.close()
    assert _setting(described, "cleanup.policy") == "compact"
    assert _setting(purchases, "cleanup.policy") == "delete"


def _setting(response: object, name: str) -> str:
    """A topic's config value from a DescribeConfigs response."""
    for resource in response.resources:  # type: ignore[attr-defined]
        for entry in resource[4]:
            if entry[0] == name:
                return str(entry[1])
    raise KeyError(name)
