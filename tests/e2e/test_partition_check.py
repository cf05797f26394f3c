"""Start-up partition-count check on a real worker (docs/time.md "Time", "A stuck clock").

An input topic created beforehand with fewer partitions than RETENTION_PARTITIONS
holds every stream clock back for good: the worker says so in its log, in
/health/ready's ``warnings`` and as ``retention_partition_mismatch{topic}``.
"""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.kafka import client_kwargs
from tests.e2e.harness import Deployment
from tests.e2e.test_ops import metric_values

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


async def test_an_input_topic_with_too_few_partitions_is_reported_at_start(
    deployment: Deployment,
) -> None:
    config = deployment.config
    sessions, purchases = config.topics.sessions, config.topics.purchases
    assert config.partitions == 4
    admin = AIOKafkaAdminClient(**client_kwargs(config))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(sessions, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()

    worker = deployment.start_worker()
    await worker.wait_ready()
    ready = await worker.get_json("/health/ready")
    assert ready["ready"] is True  # a warning, not an outage
    [warning] = [w for w in ready["warnings"] if sessions in w]
    assert f"topic {sessions} has 2 partitions, RETENTION_PARTITIONS is 4" in warning
    assert "stream clock never moves" in warning
    assert "recreate the topic with 4 partitions" in warning

    status, _, body = await worker.get("/metrics")
    assert status == 200
    values = metric_values(body.decode())
    assert values[f'retention_partition_mismatch{{topic="{sessions}"}}'] == 1
    # The topics the worker created itself have the configured count.
    assert f'retention_partition_mismatch{{topic="{purchases}"}}' not in values
    assert f"topic {sessions} has 2 partitions" in worker.log_tail(200)
