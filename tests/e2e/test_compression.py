"""What a real producer sends, sent by one nobody here wrote (kcat, librdkafka):
compressed batches with every codec Kafka has, headers, any key bytes, tombstones.
A batch the worker cannot decode is one dead letter, never a stopped pipeline
(README "Inputs")."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from agents.faust_agents import EXIT_CRASHED
from tests.e2e.harness import Deployment, WorkerProcess
from tests.fixtures import tools

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

CODECS = ("gzip", "snappy", "lz4", "zstd")
PER_BATCH = 150


def kcat() -> str:
    """kcat's path: fail under CI (``.ci/run`` installs it), skip elsewhere."""
    return tools.require("kcat", "apt-get install kcat")


def purchases(tag: str, count: int) -> bytes:
    """``count`` purchase events, one per line, alike enough for any codec to shrink."""
    return b"".join(
        orjson.dumps(
            {
                "schema": "purchase/1",
                "event_id": f"{tag}-{i}",
                "customer_id": f"{tag}-cust-{i % 40}",
                "occurred_at": f"2026-03-{1 + i % 28:02d}T10:00:00Z",
                "order_id": f"{tag}-order-{i}",
                "amount": "19.90",
                "currency": "EUR",
            }
        )
        + b"\n"
        for i in range(count)
    )


def send(dep: Deployment, topic: str, lines: bytes, *options: str) -> None:
    """One ``kcat -P`` run: the lines of ``lines`` as messages, in one batch where
    they fit, to partition 0 of ``topic``."""
    subprocess.run(
        [kcat(), "-P", "-b", dep.kafka, "-t", topic, "-p", "0", *options],
        input=lines,
        check=True,
        timeout=60,
    )


async def metrics(worker: WorkerProcess) -> dict[str, float]:
    """Every sample of the worker's ``/metrics``, by its full name with labels."""
    status, _, body = await worker.get("/metrics", timeout=5)
    assert status == 200
    out: dict[str, float] = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


async def wait_for(worker: WorkerProcess, name: str, value: float, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert worker.alive, worker.log_tail()
        if (await metrics(worker)).get(name, 0.0) >= value:
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"{name} did not reach {value}: {await metrics(worker)}")


async def test_batches_compressed_with_every_codec_are_processed(deployment: Deployment) -> None:
    topic = deployment.config.topics.purchases
    worker = deployment.start_worker()
    await worker.wait_ready()
    for codec in CODECS:
        send(deployment, topic, purchases(codec, PER_BATCH), "-z", codec)
    # Headers and keys of any bytes ride along: the key is not read (ingest
    # re-keys by customer_id), nor are the headers.
    send(deployment, topic, purchases("hdr", 5), "-H", "origin=shop-eu", "-H", "trace=\x01\xff")
    send(deployment, topic, b"\x00\xff\x1b[31m" + b"\t" + purchases("key", 1), "-K", "\t")
    total = len(CODECS) * PER_BATCH + 5 + 1
    await wait_for(worker, 'retention_events_processed_total{result="applied"}', total)

    seen = await metrics(worker)
    assert seen["retention_events_accepted_total"] == total
    assert not [k for k, v in seen.items() if k.startswith("retention_dead_letters_total{") and v]
    assert worker.alive


async def test_a_batch_that_cannot_be_decoded_is_one_dead_letter_and_the_worker_goes_on(
    deployment: Deployment, tmp_path: Path
) -> None:
    # The codec libraries cannot be imported (as on an install without aiokafka's
    # extras): snappy, lz4 and zstd batches cannot be decoded, gzip still can.
    blocked = tmp_path / "no-codecs"
    blocked.mkdir()
    (blocked / "cramjam.py").write_text("raise ImportError('blocked by the test')\n")
    deployment.extra_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(blocked), os.environ.get("PYTHONPATH", "")) if p
    )
    topic = deployment.config.topics.purchases
    worker = deployment.start_worker()
    await worker.wait_ready()

    send(deployment, topic, purchases("snappy", PER_BATCH), "-z", "snappy")
    send(deployment, topic, purchases("plain", 3))
    # A tombstone: key "gone", no value (kcat -Z sends an empty value as null).
    send(deployment, topic, b"gone:\n", "-Z", "-K", ":")
    await wait_for(worker, 'retention_dead_letters_total{code="undecodable_batch"}', 1)
    await wait_for(worker, 'retention_events_processed_total{result="applied"}', 3)
    await wait_for(worker, 'retention_dead_letters_total{code="invalid_json"}', 1)
    await deployment.wait_idle(timeout=120)

    letters = await deployment.read(deployment.config.topics.dlq)
    # At least once: a rebalance before the first commit replays the partition, so a
    # dead letter may repeat, with the same source and bytes (docs/crash-safety.md).
    # One batch is one dead letter per reading; the tombstone follows the 3 events.
    distinct = {(d["error_code"], d["source"]["offset"], d["original_sha256"]): d for d in letters}
    assert sorted((code, offset) for code, offset, _ in distinct) == [
        ("invalid_json", PER_BATCH + 3),
        ("undecodable_batch", 0),
    ]
    (batch,) = [d for d in distinct.values() if d["error_code"] == "undecodable_batch"]
    assert batch["source"] == {"topic": topic, "partition": 0, "offset": 0}
    assert f"offsets 0-{PER_BATCH - 1} ({PER_BATCH} offsets)" in batch["error"]
    assert "snappy" in batch["error"].lower()
    raw = base64.b64decode(batch["original_base64"])
    assert 0 < len(raw) == batch["original_size"] < len(purchases("snappy", PER_BATCH))
    (tombstone,) = [d for d in distinct.values() if d["error_code"] == "invalid_json"]
    assert "tombstone" in tombstone["error"]
    assert worker.alive

    # Past the bad batch, the worker committed and went on: a restart does not
    # see it again.
    worker.stop()
    worker = deployment.start_worker("w2")
    await worker.wait_ready()
    send(deployment, topic, purchases("after", 2))
    await wait_for(worker, 'retention_events_processed_total{result="applied"}', 2)
    assert (await metrics(worker)).get(
        'retention_dead_letters_total{code="undecodable_batch"}', 0.0
    ) == 0

    # Only input topics are guarded: a batch it cannot decode on the internal
    # topic (which only workers write) is a crash, and a crash exits 70.
    send(deployment, deployment.config.topics.customer_events, purchases("x", 50), "-z", "snappy")
    assert worker.proc is not None
    assert worker.proc.wait(timeout=120) == EXIT_CRASHED, worker.log_tail()
