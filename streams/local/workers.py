"""Worker processes on the local stack, for `retention demo` and `retention bench`.

A fresh, isolated stream-clock deployment (its own topic prefix, consumer group and
data dir under the local stack's run folder) and the child processes that run it
(README "Quick start", "Benchmarks").
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from streams.config import Config, default_redis_prefix, load_config
from streams.local.stack import LocalStack, StackInfo

Say = Callable[[str], None]


def say(text: str = "") -> None:
    """Progress for the person at the terminal (flushed: a child's log interleaves)."""
    print(text, flush=True)


@contextlib.contextmanager
def borrowed_stack(say: Say = say) -> Iterator[StackInfo]:
    """The local stack, started if needed; stopped afterwards only if started here."""
    stack = LocalStack(say=say)
    was_running = stack.status().running
    info = stack.up()
    try:
        yield info
    finally:
        if not was_running:
            stack.down()
            say("local stack stopped")


def stream_deployment(info: StackInfo, kind: str) -> tuple[Config, Path]:
    """A fresh, isolated stream-clock deployment on the local stack (demo, bench):
    its own topic prefix, consumer group and data dir under the run folder."""
    run_id = time.strftime("%Y%m%d%H%M%S")
    folder = info.run_dir / kind / run_id
    config = dataclasses.replace(
        load_config(),
        kafka=info.kafka,
        redis=info.redis,
        clock="stream",
        topic_prefix=f"{kind}{run_id}.",
        app_id=f"retention-{kind}-{run_id}",
        # Its own read model: never the hashes of a real deployment on the same Redis.
        redis_prefix=default_redis_prefix(f"retention-{kind}-{run_id}"),
        data_dir=folder / "data",
    )
    return config, folder


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the worker's process group, SIGKILL after 30 s."""
    if worker.poll() is not None:
        return
    os.killpg(worker.pid, signal.SIGTERM)
    try:
        worker.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)


def worker_env(config: Config, **extra: str) -> dict[str, str]:
    """The environment of a child process that runs ``config`` (worker, bench)."""
    env = dict(os.environ)
    env.update(
        RETENTION_KAFKA=config.kafka,
        RETENTION_REDIS=config.redis,
        RETENTION_CLOCK="stream",
        RETENTION_TOPIC_PREFIX=config.topic_prefix,
        RETENTION_APP_ID=config.app_id,
        RETENTION_REDIS_PREFIX=config.redis_prefix,
        RETENTION_DATA_DIR=str(config.data_dir),
        RETENTION_WEB_PORT=str(config.web_port),
        RETENTION_LOG_LEVEL="warning",
    )
    if config.rules_file:
        # The deployment's rules file (the demo's lifecycle.toml), unless ``extra`` names one.
        env["RETENTION_RULES_FILE"] = config.rules_file
    env.update(extra)
    return env


def start_worker(config: Config, folder: Path, say: Say = say) -> subprocess.Popen[bytes]:
    """`retention worker` for ``config`` in its own session, logging to folder/worker.log."""
    folder.mkdir(parents=True, exist_ok=True)
    env = worker_env(config)
    log = open(folder / "worker.log", "ab")  # noqa: SIM115 - owned by the child
    say(f"worker starting (log {folder / 'worker.log'})")
    return subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "worker"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def dashboard_url(config: Config) -> str:
    return f"http://{config.web_host}:{config.web_port}/retention/"
