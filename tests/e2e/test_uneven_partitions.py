"""One input partition consumed completely before the others, on a real worker
(docs/time.md "Time": "Uneven consumption"; "Byte budget, pending and deduplication").

The stream clock waits for the slowest input partition, so everything read from
the one ahead waits in the customers' pending queues; a busy customer's queue
goes far past the 1,024 events its row keeps and waits in overflow rows of the
RocksDB table.  Once the other partitions are read, the decisions are the
offline reference's and nothing is a dead letter.
"""

from __future__ import annotations

import random

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from agents.core.timeutil import MICROS_PER_DAY, iso, parse_timestamp, to_micros
from agents.offline.reference import compute_decisions
from streams.feed.producer import produce_lines
from streams.kafka import client_kwargs, ensure_topics
from tests.e2e.harness import Deployment, end_offsets

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

START = to_micros(parse_timestamp("2026-02-02T08:00:00Z"))
END = "2026-07-01T00:00:00Z"
HOUR = MICROS_PER_DAY // 24


def history() -> list[bytes]:
    """300 customers over 60 days, and one with 3,000 sessions and 3 orders in a day."""
    rng = random.Random(23)
    lines: list[tuple[int, bytes]] = []

    def add(cid: str, t: int, kind: str) -> None:
        n = len(lines)
        msg: dict[str, object] = {"event_id": f"e{n}", "customer_id": cid, "occurred_at": iso(t)}
        if kind == "purchase":
            msg |= {"schema": "purchase/1", "order_id": f"o{n}", "amount": "12.50"}
            msg["currency"] = "EUR"
        else:
            msg |= {"schema": "session/1", "session_id": f"s{n}"}
        lines.append((t, orjson.dumps(msg)))

    for c in range(300):
        for _ in range(rng.randrange(5, 30)):
            kind = "purchase" if rng.random() < 0.25 else "session"
            add(f"cus-{c:04d}", START + rng.randrange(60 * MICROS_PER_DAY), kind)
    burst = START + 20 * MICROS_PER_DAY
    for _ in range(3000):
        add("busy", burst + rng.randrange(MICROS_PER_DAY - HOUR), "session")
    for i in range(3):
        add("busy", burst + MICROS_PER_DAY - HOUR + i, "purchase")
    return [raw for _, raw in sorted(lines, key=lambda x: x[0])]


async def send(producer: AIOKafkaProducer, messages: list[tuple[str, int, bytes]]) -> None:
    futures = [await producer.send(t, raw, partition=p) for t, p, raw in messages]
    for f in futures:
        await f


async def test_one_input_partition_read_first_decides_as_the_reference(
    deployment: Deployment,
) -> None:
    config = deployment.config
    topics = config.topics
    lines = history()
    rng = random.Random(4)
    placed = [
        (
            topics.sessions if b'"session/1"' in raw else topics.purchases,
            0 if b'"busy"' in raw and b'"session/1"' in raw else rng.randrange(config.partitions),
            raw,
        )
        for raw in lines
    ]
    ahead = [m for m in placed if m[:2] == (topics.sessions, 0)]
    rest = [m for m in placed if m[:2] != (topics.sessions, 0)]
    await ensure_topics(config)
    worker = deployment.start_worker()
    await worker.wait_ready()
    producer = AIOKafkaProducer(**client_kwargs(config), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await send(producer, ahead)  # read completely while every other partition is empty
        await deployment.wait_idle(timeout=300)
        busy = await worker.get_json("/retention/customers/busy")
        assert busy["state"]["pending_events"] >= 3000  # far past the row's 1,024
        await send(producer, rest)
    finally:
        await producer.stop()
    await produce_lines(config, [], until=END)  # every clock to END, as replay ends
    await deployment.wait_idle(timeout=300)
    assert worker.alive, worker.log_tail()

    # No dead letter at all (reading an empty topic trips aiokafka: count offsets).
    assert sum((await end_offsets(config, [topics.dlq])).values()) == 0
    reference = compute_decisions(lines, config, until=to_micros(parse_timestamp(END)))
    expected = sorted((d["trigger_id"], d["outcome"]) for d in reference.decisions)
    published = {(d["trigger_id"], d["outcome"]) for d in await deployment.read(topics.decisions)}
    assert sorted(published) == expected
    assert any(d["customer_id"] == "busy" for d in reference.decisions)
    busy = await worker.get_json("/retention/customers/busy")
    assert busy["state"]["pending_events"] == 0 and busy["state"]["orders"] == 3
