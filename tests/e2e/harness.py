"""Running real `retention worker` processes against the session's broker.

Workers are subprocesses (the way ops run them), each with its own data dir and
web port, sharing an app id (= consumer group) and a topic prefix per test.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from streams.config import Config, load_config
from streams.offsets import end_offsets, read_all, wait_caught_up
from streams.producer import produce_lines

__all__ = ["Deployment", "WorkerProcess", "decision_key", "end_offsets", "read_all"]

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Deployment:
    """One isolated deployment: topic prefix, app id, env, and its workers."""

    kafka: str
    redis: str
    prefix: str
    workdir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RETENTION_")}
        env.update(
            RETENTION_HOME=str(self.workdir / "home"),
            RETENTION_KAFKA=self.kafka,
            RETENTION_REDIS=self.redis,
            RETENTION_TOPIC_PREFIX=self.prefix,
            RETENTION_APP_ID=f"{self.prefix}app",
            RETENTION_REDIS_PREFIX=f"{self.prefix}",
            RETENTION_CLOCK="stream",
            RETENTION_LOG_LEVEL="warning",
            RETENTION_PARTITIONS="4",
        )
        env.update(self.extra_env)
        return env

    @property
    def config(self) -> Config:
        return load_config(self.env, use_stack_file=False)

    def start_worker(self, name: str | None = None) -> WorkerProcess:
        name = name or f"w{len(self.workers) + 1}"
        worker = WorkerProcess(name, self.workdir / name, self.env)
        worker.start()
        self.workers.append(worker)
        return worker

    def stop_all(self) -> None:
        for w in self.workers:
            w.stop()

    async def produce(self, lines: Iterable[bytes], until: str | None = None) -> int:
        stats = await produce_lines(self.config, list(lines), until=until)
        return stats.sent

    async def wait_idle(self, timeout: float = 600.0, settle: float = 6.0) -> None:
        """Wait until the app's group has committed every input and internal message."""
        await wait_caught_up(self.config, timeout=timeout, settle=settle)

    async def read(self, topic: str) -> list[dict[str, Any]]:
        return [orjson.loads(v) for v in await read_all(self.config, topic)]


class WorkerProcess:
    def __init__(self, name: str, data_dir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.data_dir = data_dir
        self.env = dict(env)
        self.web_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{name}.log"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(
            self.env, RETENTION_DATA_DIR=str(self.data_dir), RETENTION_WEB_PORT=str(self.web_port)
        )
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def address(self) -> str:
        """host:port as the worker reports itself (``served_by``, ``scope.worker``)."""
        return f"127.0.0.1:{self.web_port}"

    def get_sync(self, path: str, timeout: float = 10.0) -> tuple[int, str, bytes]:
        """GET a path of the worker's web server: (status, content type, body).

        Status 0 means nothing answered (not started yet, or gone)."""
        try:
            with urllib.request.urlopen(self.web_url + path, timeout=timeout) as resp:
                return resp.status, resp.headers.get("Content-Type", ""), resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.headers.get("Content-Type", ""), err.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0, "", b""

    async def get(self, path: str, timeout: float = 10.0) -> tuple[int, str, bytes]:
        return await asyncio.to_thread(self.get_sync, path, timeout)

    async def get_json(self, path: str) -> Any:
        status, _, body = await self.get(path)
        assert status == 200, (path, status, body[:300])
        return orjson.loads(body)

    async def wait_ready(self, timeout: float = 120.0) -> None:
        """Wait until /health/ready answers 200 (tables recovered)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (await self.get("/health/ready", timeout=2))[0] == 200:
                return
            assert self.alive, self.log_tail()
            await asyncio.sleep(0.5)
        raise TimeoutError(f"{self.name} not ready after {timeout} s\n{self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def decision_key(d: dict[str, Any]) -> tuple[str, str, int, str, str]:
    return (d["customer_id"], d["rule"], int(d["step"]), d["anchor_at"], d["due_at"])
