"""A minimal Faust app for the changelog-recovery test: counts events per key.

Run as ``python -m tests.integration.faust_counter_app worker -l warning`` with
COUNTER_BROKER, COUNTER_APP_ID, COUNTER_DATADIR, COUNTER_INPUT and
COUNTER_OUTPUT set.  Every event increments its key's count in a RocksDB table
(changelogged to Kafka) and publishes ``{"key": ..., "count": ...}``.
"""

from __future__ import annotations

import os
from typing import Any

import faust

app = faust.App(
    os.environ["COUNTER_APP_ID"],
    broker=f"kafka://{os.environ['COUNTER_BROKER']}",
    store="rocksdb://",
    datadir=os.environ["COUNTER_DATADIR"],
    web_enabled=False,
    topic_partitions=2,
    topic_replication_factor=1,
    consumer_auto_offset_reset="earliest",
)
events = app.topic(os.environ["COUNTER_INPUT"], key_type=str, value_serializer="json")
output = app.topic(os.environ["COUNTER_OUTPUT"], key_type=str, value_serializer="json")
counts = app.Table("counts", default=int, partitions=2)


@app.agent(events)
async def count(stream: faust.StreamT[Any]) -> None:
    async for key, _event in stream.items():
        counts[key] += 1
        await output.send(key=key, value={"key": key, "count": counts[key]})


if __name__ == "__main__":
    app.main()
