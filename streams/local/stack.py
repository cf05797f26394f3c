"""The local stack: one embedded Kafka broker and one redis-server on loopback.

``LocalStack(run_dir).up()`` starts both (or reports the ones already running),
writes ``<run_dir>/stack.json`` with their addresses, and returns a
:class:`StackInfo`; ``down()`` stops exactly the processes it started.  The
worker and the CLI read ``stack.json`` from the default run folder
(``default_home()/run``), so after ``retention local up`` nothing needs
configuring.  The test suite runs the same code in a temporary run folder.

Run folder layout::

    stack.json          addresses + pids, present only while the stack is up
    pids.json           what was started (written before waiting for readiness)
    kafka/              server.properties, log4j.properties, data/ (the broker's log dirs)
    redis/              redis-server's working folder
    logs/               kafka.log, kafka-console.log, redis.log
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streams.config import default_home
from streams.local import jars, kafka, redis
from streams.local.prereqs import find_java, find_redis_server
from streams.local.procs import (
    LOOPBACK,
    LocalStackError,
    Say,
    free_ports,
    pid_matches,
    port_is_free,
    quiet,
    stop_pid,
    wait_until,
)

REDIS_READY_TIMEOUT = 15.0
STOP_TIMEOUT = 30.0


def default_run_dir() -> Path:
    """``default_home()/run``: where ``retention local up`` keeps its files."""
    return default_home() / "run"


@dataclass(frozen=True, slots=True)
class StackInfo:
    """Where a running local stack listens, and the processes serving it."""

    kafka: str
    redis: str
    kafka_pid: int
    redis_pid: int
    started_at: str
    run_dir: Path
    # True when up() found the stack already running and started nothing.
    already_running: bool = False
    # program -> where it came from, e.g. {"java": "wheel (/…/bin/java)", "jars": "direct (…)"}
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def kafka_log(self) -> Path:
        return kafka.KafkaPaths(self.run_dir).log

    @property
    def redis_log(self) -> Path:
        return redis.RedisPaths(self.run_dir).log

    @property
    def stack_file(self) -> Path:
        return self.run_dir / "stack.json"

    def to_json(self) -> dict[str, Any]:
        return {
            "kafka": self.kafka,
            "redis": self.redis,
            "kafka_pid": self.kafka_pid,
            "redis_pid": self.redis_pid,
            "started_at": self.started_at,
            "run_dir": str(self.run_dir),
            "kafka_version": jars.KAFKA_VERSION,
            "kafka_log": str(self.kafka_log),
            "redis_log": str(self.redis_log),
            "sources": dict(self.sources),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], run_dir: Path) -> StackInfo | None:
        try:
            return cls(
                kafka=str(data["kafka"]),
                redis=str(data["redis"]),
                kafka_pid=int(data["kafka_pid"]),
                redis_pid=int(data["redis_pid"]),
                started_at=str(data.get("started_at", "")),
                run_dir=run_dir,
                sources={str(k): str(v) for k, v in dict(data.get("sources") or {}).items()},
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True, slots=True)
class StackStatus:
    """What ``status()`` found: the recorded stack, and whether each part is alive and answers."""

    info: StackInfo | None
    kafka_alive: bool
    kafka_ready: bool
    redis_alive: bool
    redis_ready: bool

    @property
    def running(self) -> bool:
        return self.info is not None and all(
            (self.kafka_alive, self.kafka_ready, self.redis_alive, self.redis_ready)
        )

    @property
    def state(self) -> str:
        """``running``, ``stopped`` or ``degraded`` (something recorded is dead or silent)."""
        if self.running:
            return "running"
        if self.kafka_alive or self.redis_alive or self.info is not None:
            return "degraded"
        return "stopped"


class LocalStack:
    """Start, stop and inspect one local stack living in ``run_dir``."""

    def __init__(
        self,
        run_dir: Path | None = None,
        *,
        jar_cache: Path | None = None,
        ready_timeout: float = 90.0,
        say: Say = quiet,
    ) -> None:
        self.run_dir = (run_dir or default_run_dir()).expanduser().resolve()
        self.jar_cache = jar_cache or jars.jar_cache_dir()
        self.ready_timeout = ready_timeout
        self.say = say

    # --- files --------------------------------------------------------------------

    @property
    def stack_file(self) -> Path:
        return self.run_dir / "stack.json"

    @property
    def pids_file(self) -> Path:
        return self.run_dir / "pids.json"

    def _read_json(self, path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_json(self, path: Path, data: dict[str, Any]) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One up/down at a time per run folder."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with (self.run_dir / ".lock").open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _started(self) -> dict[str, tuple[int, str]]:
        """name -> (pid, marker) of every process recorded as started here."""
        out: dict[str, tuple[int, str]] = {}
        for name, entry in self._read_json(self.pids_file).items():
            if isinstance(entry, dict) and isinstance(entry.get("pid"), int):
                out[name] = (entry["pid"], str(entry.get("marker", "")))
        return out

    def _record(self, name: str, pid: int, marker: str) -> None:
        data = self._read_json(self.pids_file)
        data[name] = {"pid": pid, "marker": marker}
        self._write_json(self.pids_file, data)

    def _kafka_marker(self) -> str:
        # The broker's command line names its server.properties inside this run folder.
        return str(kafka.KafkaPaths(self.run_dir).properties)

    @staticmethod
    def _redis_marker(port: int) -> str:
        # redis-server rewrites its process title to "redis-server 127.0.0.1:PORT".
        return f"{LOOPBACK}:{port}"

    # --- status -------------------------------------------------------------------

    def status(self) -> StackStatus:
        """Read ``stack.json`` and check that both processes are alive and answering."""
        info = StackInfo.from_json(self._read_json(self.stack_file), self.run_dir)
        started = self._started()
        kafka_pid, kafka_marker = started.get("kafka", (0, ""))
        redis_pid, redis_marker = started.get("redis", (0, ""))
        kafka_alive = bool(kafka_marker) and pid_matches(kafka_pid, kafka_marker)
        redis_alive = bool(redis_marker) and pid_matches(redis_pid, redis_marker)
        kafka_ready = redis_ready = False
        if info is not None:
            kafka_ready = kafka_alive and kafka.is_ready(info.kafka)
            redis_ready = redis_alive and redis.ping(redis.port_of(info.redis))
        return StackStatus(info, kafka_alive, kafka_ready, redis_alive, redis_ready)

    # --- up -----------------------------------------------------------------------

    def up(
        self, kafka_port: int | None = None, redis_port: int | None = None, *, fresh: bool = False
    ) -> StackInfo:
        """Start Kafka and Redis and wait until both answer; see the module docstring.

        If this run folder's stack is already running, returns it (``already_running``)
        and starts nothing.  On any failure everything started here is stopped again.
        ``fresh`` wipes the broker's data (topics, offsets) before starting.
        """
        with self._locked():
            current = self.status()
            if current.running and current.info is not None:
                return replace(current.info, already_running=True)
            if current.state == "degraded":
                self.say("Found a half-running stack from an earlier run; stopping it first.")
                self._stop_all()

            # Everything that can be checked is checked before anything starts:
            # java and redis-server from the PATH, else from their pinned wheels
            # (streams/local/prereqs.py); the jars via mvn, else downloaded directly.
            java, redis_server = find_java(), find_redis_server()
            for name, port in (("Kafka", kafka_port), ("Redis", redis_port)):
                if port is not None and not port_is_free(port):
                    raise LocalStackError(
                        f"{name} port {port} on {LOOPBACK} is already in use; "
                        "pick another or omit it to use a free one"
                    )
            libs = jars.ensure_jars(self.jar_cache, say=self.say)
            if fresh:
                shutil.rmtree(kafka.KafkaPaths(self.run_dir).data_dir, ignore_errors=True)

            explicit = {p for p in (kafka_port, redis_port) if p is not None}
            spare = iter(p for p in free_ports(3 + len(explicit)) if p not in explicit)
            kport = kafka_port or next(spare)
            rport = redis_port or next(spare)
            cport = next(spare)
            try:
                redis_proc = redis.start_redis(
                    self.run_dir, port=rport, redis_server=redis_server.path
                )
                self._record("redis", redis_proc.pid, self._redis_marker(rport))
                kafka_proc = kafka.start_broker(
                    libs, self.run_dir, port=kport, controller_port=cport, java=java.path
                )
                self._record("kafka", kafka_proc.pid, self._kafka_marker())
                wait_until(
                    lambda: redis.ping(rport),
                    timeout=REDIS_READY_TIMEOUT,
                    what=f"redis-server on {LOOPBACK}:{rport}",
                    proc=redis_proc,
                    log_path=redis.RedisPaths(self.run_dir).log,
                )
                bootstrap = f"{LOOPBACK}:{kport}"
                wait_until(
                    lambda: kafka.is_ready(bootstrap),
                    timeout=self.ready_timeout,
                    what=f"Kafka broker on {bootstrap}",
                    proc=kafka_proc,
                    log_path=kafka.KafkaPaths(self.run_dir).log,
                    interval=0.2,
                )
            except BaseException:
                self._stop_all()
                raise
            info = StackInfo(
                kafka=bootstrap,
                redis=redis.url_for(rport),
                kafka_pid=kafka_proc.pid,
                redis_pid=redis_proc.pid,
                started_at=datetime.now(UTC).isoformat(timespec="seconds"),
                run_dir=self.run_dir,
                sources={
                    "java": java.describe(),
                    "redis-server": redis_server.describe(),
                    "jars": f"{jars.jar_source(self.jar_cache) or 'maven'} ({libs})",
                },
            )
            self._write_json(self.stack_file, info.to_json())
            return info

    # --- down ---------------------------------------------------------------------

    def down(self) -> list[str]:
        """Stop what ``up`` started and remove ``stack.json``; returns the names stopped.

        Idempotent: with nothing running it only tidies the run folder.
        """
        if not self.run_dir.is_dir():
            return []
        with self._locked():
            return self._stop_all()

    def _stop_all(self) -> list[str]:
        # Last started, first stopped: the broker before Redis.
        stopped = [
            name
            for name, (pid, marker) in reversed(self._started().items())
            if marker and stop_pid(pid, marker, timeout=STOP_TIMEOUT)
        ]
        for path in (self.stack_file, self.pids_file):
            path.unlink(missing_ok=True)
        return stopped
