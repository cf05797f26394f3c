"""`retention tail` against the session's broker: a mistyped topic is an error, not a
new topic; a reader that goes away (`| head`) ends it quietly (README "CLI")."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from streams.local.stack import StackInfo
from tests.fixtures.kafka import create_topics, produce_json

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def tail(
    stack: StackInfo, prefix: str, tmp_path: Path, *args: str, **popen: object
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETENTION_")}
    env.update(
        RETENTION_HOME=str(tmp_path / "home"),
        RETENTION_KAFKA=stack.kafka,
        RETENTION_TOPIC_PREFIX=prefix,
        PYTHONPATH=str(ROOT),
    )
    return subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "tail", *args],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        **popen,  # type: ignore[call-overload]
    )


async def topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def test_a_mistyped_topic_is_an_error_and_is_not_created(
    local_stack: StackInfo, unique_prefix: str, tmp_path: Path
) -> None:
    # A name that is not a short one is taken as a full topic name.
    typo = f"{unique_prefix}retention.nudgez"
    proc = tail(local_stack, unique_prefix, tmp_path, typo, "--idle", "3", stdout=subprocess.PIPE)
    try:
        out, err = await asyncio.to_thread(proc.communicate, timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1
    assert err.decode().splitlines() == [
        f"retention: topic {typo} does not exist (short names: purchases, "
        "sessions, consents, signups, product-views, carts, order-cancellations, nudges, "
        "decisions, outcomes, dlq, customer-events, rules)"
    ]
    assert out == b""
    await asyncio.sleep(1.0)  # an auto-created topic would be listed by now
    assert typo not in await topics(local_stack.kafka)


async def test_tail_into_a_reader_that_goes_away_exits_quietly(
    local_stack: StackInfo, unique_prefix: str, tmp_path: Path
) -> None:
    topic = unique_prefix + "retention.nudges"
    await create_topics(local_stack.kafka, [topic])
    await produce_json(local_stack.kafka, topic, [(f"c{i}", {"i": i}) for i in range(50)])
    # `retention tail nudges | head -1`, with the reader already gone.
    proc = tail(
        local_stack, unique_prefix, tmp_path, "nudges", "--idle", "5", stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    proc.stdout.close()
    try:
        _, err = await asyncio.to_thread(proc.communicate, timeout=60)
    finally:
        proc.kill()
    assert err.decode() == ""
    assert proc.returncode == 0
