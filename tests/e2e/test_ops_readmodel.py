"""Readiness during table recovery, and the Redis read model through a Redis outage
(docs/operations.md "Read model"), on real workers, the session's broker and a dedicated
redis-server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from agents.core.engine import Engine
from agents.core.state import CustomerState
from agents.core.timeutil import parse_timestamp, to_micros
from agents.offline.reference import compute_decisions
from streams.config import Config
from streams.feed.sample import generate
from streams.kafka import changelog_topics, client_kwargs, ensure_topics
from streams.local.redis import ping, start_redis, url_for
from streams.ops.tables import read_table
from streams.worker.readmodel import STATE_FIELDS, hash_fields
from tests.e2e.harness import (
    ROOT,
    Deployment,
    WorkerProcess,
    decision_key,
    free_port,
)
from tests.e2e.test_ops import metric_values

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

END = "2026-06-01T00:00:00Z"
OUTAGE_SECONDS = 30.0


class RedisServer:
    """A redis-server of one test's own, which the test may stop and restart."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return url_for(self.port)

    def start(self) -> None:
        self.proc = start_redis(self.run_dir, port=self.port)
        deadline = time.monotonic() + 20
        while not ping(self.port):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "own-redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def metrics_of(w: WorkerProcess) -> dict[str, float]:
    status, _, body = await w.get("/metrics")
    assert status == 200, w.log_tail()
    return metric_values(body.decode())


async def wait_metrics(
    w: WorkerProcess, ok: Callable[[dict[str, float]], bool], timeout: float = 120.0
) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    values: dict[str, float] = {}
    while time.monotonic() < deadline:
        values = await metrics_of(w)
        if ok(values):
            return values
        assert w.alive, w.log_tail()
        await asyncio.sleep(0.5)
    raise TimeoutError(f"metrics never satisfied the condition: {values}")


def read_model_current(v: dict[str, float]) -> bool:
    return (
        v["retention_read_model_lag"] == 0
        and v["retention_read_model_redis_up"] == 1
        and v["retention_read_model_resync_partitions"] == 0
    )


async def assert_read_model_equals_table(config: Config, client: aioredis.Redis) -> int:
    """Every customer of the table has a hash with exactly its fields; no other hash."""
    table = await read_table(config)
    engine = Engine(config.core)
    expected: dict[str, dict[str, str]] = {}
    for state in table.customers.values():
        fields = hash_fields(state, engine, now=0)
        expected[f"{config.redis_prefix}customer:{state.customer_id}"] = {
            k: fields[k] for k in STATE_FIELDS
        }
    keys = {k.decode() async for k in client.scan_iter(match=f"{config.redis_prefix}customer:*")}
    assert keys == set(expected), (len(keys - set(expected)), len(set(expected) - keys))
    pipe = client.pipeline(transaction=False)
    for key in expected:
        pipe.hgetall(key)
    stored = await pipe.execute()
    wrong = []
    for key, got in zip(expected, stored, strict=True):
        fields = {k.decode(): v.decode() for k, v in got.items()}
        if {k: fields.get(k) for k in STATE_FIELDS} != expected[key] or not fields["updated_at"]:
            wrong.append((key, fields, expected[key]))
    assert not wrong, f"{len(wrong)} hashes differ from the table, e.g. {wrong[:1]}"
    return len(expected)


async def test_redis_down_for_30s_loses_no_trigger_and_catches_up(
    make_deployment: Callable[..., Deployment], own_redis: RedisServer
) -> None:
    until = to_micros(parse_timestamp(END))
    lines = list(generate(600, 120, seed=21, end=until))
    ref = compute_decisions(lines, Config(), until=until)
    dep = make_deployment(RETENTION_REDIS=own_redis.url)
    config = dep.config
    client = aioredis.Redis.from_url(own_redis.url)
    try:
        w = dep.start_worker()
        await w.wait_ready()
        half = len(lines) // 2
        await dep.produce(lines[:half])
        await dep.wait_idle(timeout=300)
        await wait_metrics(
            w,
            lambda v: (
                read_model_current(v)
                and v['retention_read_model_writes_total{result="written"}'] > 0
            ),
        )
        assert await client.dbsize() > 0

        own_redis.stop()
        stopped = time.monotonic()
        await dep.produce(lines[half:], until=END)
        await dep.wait_idle(timeout=300)
        # Lag and the Redis-down flag are asserted on one scrape: a flush may fail
        # between two scrapes, so neither is required before the other.
        down = await wait_metrics(
            w,
            lambda v: v["retention_read_model_lag"] > 0 and v["retention_read_model_redis_up"] == 0,
            timeout=30,
        )
        await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))
        still = await metrics_of(w)
        assert still["retention_read_model_lag"] >= down["retention_read_model_lag"]
        assert still["retention_read_model_lag_seconds"] > 0
        outage = time.monotonic() - stopped
        assert outage >= OUTAGE_SECONDS

        # Redis comes back empty (no persistence): the worker resyncs everything.
        own_redis.start()
        await client.aclose()  # its pooled connection died with the old server
        client = aioredis.Redis.from_url(own_redis.url)
        await wait_metrics(w, read_model_current, timeout=120)
        assert w.alive, w.log_tail()

        # Zero triggers lost: the decisions topic holds every decision of the reference.
        decisions = await dep.read(config.topics.decisions)
        got = {decision_key(d): d["trigger_id"] for d in decisions}
        expected = {decision_key(d): d["trigger_id"] for d in ref.decisions}
        assert len(expected) > 100
        missing = set(expected) - set(got)
        assert not missing, f"{len(missing)} decisions lost, e.g. {sorted(missing)[:3]}"
        assert set(got) == set(expected)
        assert all(got[k] == expected[k] for k in expected)
        delivered = [d for d in ref.decisions if d["outcome"] == "delivered"]
        nudges = await dep.read(config.topics.nudges)
        assert {n["trigger_id"] for n in nudges} == {d["trigger_id"] for d in delivered}

        customers = await assert_read_model_equals_table(config, client)
        assert customers == ref.customers

        # rebuild-read-model repopulates an emptied Redis from the tables alone.
        await client.flushdb()
        w.stop()
        out = subprocess.run(
            [sys.executable, "-m", "streams.cli", "rebuild-read-model"],
            cwd=ROOT,
            env=dep.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        assert f"wrote {customers} hashes" in out.stdout
        assert await assert_read_model_equals_table(config, client) == customers
    finally:
        await client.aclose()


async def lookup_during_recovery(w: WorkerProcess) -> None:
    """One lookup while the worker may still be recovering: 503 (or no answer) until
    the table is whole, then 200 with the recovered row; never 404."""
    status, _, body = await w.get("/retention/customers/rc000001", timeout=2)
    assert status in (503, 200, 0), (status, body[:200])
    if status == 200:
        state = orjson.loads(body)["state"]
        assert state["orders"] == 1 and state["version"] == 1, state


async def test_ready_only_after_table_recovery(deployment: Deployment) -> None:
    """A worker with an empty data dir replays a big changelog before it is ready."""
    config = deployment.config
    await ensure_topics(config, changelogs=True)
    topic = changelog_topics(config)[0]
    parts = list(range(config.partitions))
    partitioner = DefaultPartitioner()
    n = 40_000
    producer = AIOKafkaProducer(**client_kwargs(config), linger_ms=50, max_batch_size=256 * 1024)
    await producer.start()
    try:
        for i in range(n):
            cid = f"rc{i:06d}"
            p = partitioner(cid.encode(), parts, parts)
            state = CustomerState(customer_id=cid, partition=p, version=1)
            state.orders, state.first_order_at = 1, 1_700_000_000_000_000 + i
            state.last_order_at = state.last_activity_at = state.first_order_at
            state.stage = "new"
            await producer.send(
                topic, key=f"c/{cid}".encode(), value=orjson.dumps(state.to_dict()), partition=p
            )
        await producer.flush()
    finally:
        await producer.stop()

    w = deployment.start_worker()
    seen: list[int] = []
    recovering_seen = False
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        status, _, body = await w.get("/health/ready", timeout=2)
        if status:
            seen.append(status)
            recovering_seen |= status == 503 and orjson.loads(body)["recovering"]
            if status == 200:
                break
            # Recovery may end between the two requests, so the lookup may rightly
            # answer 200; what it never does is answer "unknown customer" (404) from a
            # half-recovered table, or a 200 without the recovered row.
            await lookup_during_recovery(w)
        assert w.alive, w.log_tail()
        await asyncio.sleep(0.02)
    assert seen and seen[-1] == 200, (seen[-5:], w.log_tail())
    assert 503 in seen, "never saw the worker not ready"
    assert seen.index(503) < seen.index(200)
    assert set(seen) == {503, 200}
    assert recovering_seen, "never caught the worker recovering its table"

    # Once ready it answers from the recovered table.
    got = await w.get_json("/retention/customers/rc000001")
    assert got["state"]["orders"] == 1 and got["state"]["version"] == 1
    assert (await metrics_of(w))["retention_ready"] == 1.0
