"""A Faust table survives losing its local RocksDB data: it is rebuilt from the changelog.

The worker runs as a real subprocess (``faust_counter_app``) against the
session's broker; it is stopped gracefully, its data folder deleted, and started
again.  After the restart each key's count must continue from N (N+1 after one
more event) without re-processing old input.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka import ConsumerRecord

from streams.local.procs import tail
from streams.local.stack import StackInfo
from tests.fixtures.kafka import create_topics, end_offsets, produce_json, read_topic

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
KEYS = ("alice", "bob", "carol")
N = 4
WORKER_TIMEOUT = 90.0  # a Faust worker needs 10-20 s to start on a busy 2-core box


class Worker:
    """One ``faust worker`` subprocess with its log in a file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.integration.faust_counter_app",
                    "worker",
                    "-l",
                    "warn",
                ],
                cwd=REPO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def running(self) -> bool:
        """True while the worker runs; raises with its log if it died."""
        if self.proc is None or self.proc.poll() is not None:
            code = self.proc.returncode if self.proc else None
            raise AssertionError(f"worker exited (code {code}); log:\n{tail(self.log, 40)}")
        return True

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM (Faust stops gracefully: commits offsets, flushes the producer)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            raise AssertionError(
                f"worker ignored SIGTERM for {timeout} s; log:\n{tail(self.log)}"
            ) from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def worker(local_stack: StackInfo, unique_prefix: str, tmp_path: Path) -> Iterator[Worker]:
    env = dict(os.environ)
    env.update(
        COUNTER_BROKER=local_stack.kafka,
        COUNTER_APP_ID=unique_prefix + "counter",
        COUNTER_DATADIR=str(tmp_path / "faust-data"),
        COUNTER_INPUT=unique_prefix + "in",
        COUNTER_OUTPUT=unique_prefix + "out",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
    )
    w = Worker(env, tmp_path / "worker.log")
    try:
        yield w
    finally:
        w.kill()


def _latest_counts(records: list[ConsumerRecord[bytes, bytes]]) -> dict[str, int]:
    latest: dict[str, int] = {}
    for r in records:
        value = orjson.loads(r.value)
        latest[value["key"]] = max(latest.get(value["key"], 0), value["count"])
    return latest


async def test_table_is_recovered_from_changelog_after_local_data_is_lost(
    local_stack: StackInfo, worker: Worker
) -> None:
    bootstrap = local_stack.kafka
    source, sink = worker.env["COUNTER_INPUT"], worker.env["COUNTER_OUTPUT"]
    datadir = Path(worker.env["COUNTER_DATADIR"])
    await create_topics(bootstrap, [source, sink], partitions=2)
    await produce_json(bootstrap, source, [(k, {"n": i}) for i in range(N) for k in KEYS])

    worker.start()
    try:
        first = await read_topic(
            bootstrap,
            sink,
            until=lambda r: worker.running() and _latest_counts(r) == dict.fromkeys(KEYS, N),
            timeout=WORKER_TIMEOUT,
        )
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\nworker log:\n{tail(worker.log, 40)}") from None
    worker.stop()
    assert len(first) == N * len(KEYS)
    assert datadir.exists(), "the worker should have kept its table in RocksDB here"
    shutil.rmtree(datadir)

    before_restart = await end_offsets(bootstrap, sink)
    await produce_json(bootstrap, source, [(k, {"n": N}) for k in KEYS])
    worker.start()
    try:
        after = await read_topic(
            bootstrap,
            sink,
            until=lambda r: worker.running() and set(_latest_counts(r)) == set(KEYS),
            timeout=WORKER_TIMEOUT,
            start_offsets=before_restart,
        )
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\nworker log:\n{tail(worker.log, 40)}") from None
    worker.stop()

    # Exactly one new output per key, continuing from the recovered count: nothing
    # was re-processed and nothing was lost with the local data.
    assert sorted(orjson.loads(r.value)["key"] for r in after) == sorted(KEYS)
    assert _latest_counts(after) == dict.fromkeys(KEYS, N + 1)
