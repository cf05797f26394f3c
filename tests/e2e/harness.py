"""Running real `retention worker` processes against the session's broker.

Workers are subprocesses (the way ops run them), each with its own data dir and
web port, sharing an app id (= consumer group) and a topic prefix per test.
"""

from __future__ import annotations

import asyncio
import os
import shutil
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

from agents.core.timeutil import iso, parse_timestamp, to_micros
from agents.offline.reference import ReferenceResult
from streams.config import Config, load_config
from streams.feed.producer import produce_lines
from streams.ops.offsets import end_offsets, group_lag, read_all
from tests.fixtures.contracts import check_outputs

__all__ = [
    "Deployment",
    "Expected",
    "FaultCounts",
    "WorkerProcess",
    "compare_with_reference",
    "decision_key",
    "end_offsets",
    "read_all",
    "record_counts",
]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"


async def wait_caught_up(
    config: Config, *, timeout: float, settle: float = 6.0, poll: float = 1.0
) -> float:
    """Wait until the group's lag is zero and has stayed so for ``settle`` seconds.

    Returns the seconds waited; raises TimeoutError with the last lag seen.
    """
    start = time.monotonic()
    zero_since: float | None = None
    lag: int | None = None
    while time.monotonic() - start < timeout:
        lag = await group_lag(config)
        if lag == 0:
            zero_since = zero_since or time.monotonic()
            if time.monotonic() - zero_since >= settle:
                return time.monotonic() - start
        else:
            zero_since = None
        await asyncio.sleep(poll)
    raise TimeoutError(f"group {config.app_id} still has lag {lag} after {timeout} s")


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

    async def produce_paced(
        self, lines: list[bytes], chunks: int, pause: float, until: str | None = None
    ) -> int:
        """Produce ``lines`` in ``chunks`` parts ``pause`` seconds apart: a replay that lasts.

        Each part but the last ends with a ``control/advance`` to just before the
        earliest event still to come (so no later event is late), the last with
        ``until``: without them a silent input partition would hold the stream
        clock back until the end (docs/time.md "Time").
        """
        size = max(1, -(-len(lines) // chunks))
        sent = 0
        for start in range(0, len(lines), size):
            stop = start + size
            marker = until if stop >= len(lines) else marker_before(lines[stop:])
            sent += await self.produce(lines[start:stop], until=marker)
            if stop < len(lines):
                await asyncio.sleep(pause)
        return sent

    async def wait_idle(self, timeout: float = 600.0, settle: float = 6.0) -> None:
        """Wait until the app's group has committed every input and internal message."""
        await wait_caught_up(self.config, timeout=timeout, settle=settle)

    async def read(self, topic: str) -> list[dict[str, Any]]:
        """Every record on ``topic``; an output topic's must validate against its
        schema with format checks (tests/fixtures/contracts.py)."""
        records = [orjson.loads(v) for v in await read_all(self.config, topic)]
        check_outputs(self.config.topics, topic, records)
        return records

    async def read_sampled(self, topic: str, every: int = 50) -> list[dict[str, Any]]:
        """Every record on ``topic``, of which the schema check (``read``'s, about
        0.3 ms a record) sees every ``every``-th and the first of each shape (its
        keys, its outcome, which of its values are null): for tens of thousands."""
        records = [orjson.loads(v) for v in await read_all(self.config, topic)]
        shapes: dict[tuple[Any, ...], dict[str, Any]] = {}
        for r in records:
            shape = (r.get("outcome"), tuple(sorted((k, v is None) for k, v in r.items())))
            shapes.setdefault(shape, r)
        check_outputs(self.config.topics, topic, [*records[::every], *shapes.values()])
        return records


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
        """SIGTERM (a graceful stop); kill -9 after ``timeout`` seconds."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()

    def wipe_data(self) -> None:
        """Remove the worker's data dir (its RocksDB tables); only while it is stopped."""
        assert not self.alive, "wipe the data dir of a stopped worker only"
        shutil.rmtree(self.data_dir, ignore_errors=True)

    async def metric(self, name: str) -> float | None:
        """The value of an unlabelled gauge or counter from ``/metrics`` (None if absent)."""
        status, _, body = await self.get("/metrics", timeout=5)
        if status != 200:
            return None
        for line in body.decode().splitlines():
            metric, _, value = line.partition(" ")
            if metric == name:
                return float(value)
        return None

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
    # A keyed (cart) ladder's firing is one per cart: two carts updated at one instant
    # share the rest of the key (docs/lifecycle.md "Rules").
    cart = (d.get("context") or {}).get("cart")
    anchor = d["anchor_at"] if not cart else f"{d['anchor_at']} cart {cart['cart_id']}"
    return (d["customer_id"], d["rule"], int(d["step"]), anchor, d["due_at"])


def marker_before(rest: Iterable[bytes]) -> str | None:
    """A ``control/advance`` time safe to send before ``rest``: 1 µs before its
    earliest event (None when it has none)."""
    earliest: int | None = None
    for line in rest:
        try:
            t = to_micros(parse_timestamp(orjson.loads(line)["occurred_at"]))
        except Exception:  # a malformed line: a dead letter, not an event
            continue
        earliest = t if earliest is None else min(earliest, t)
    return None if earliest is None else iso(earliest - 1)


DecisionKey = tuple[str, str, int, str, str]
# What a consumer of the decisions topic acts on: trigger_id, outcome, holdout.
Verdict = tuple[str, str, bool]


@dataclass(frozen=True)
class Expected:
    """What the offline reference says a deployment must publish."""

    decisions: dict[DecisionKey, Verdict]
    # trigger_id -> (group, due_at, converted_at, order_id)
    outcomes: dict[str, tuple[str, str, str, str]]

    @classmethod
    def of(cls, result: ReferenceResult) -> Expected:
        decisions = {
            decision_key(d): (d["trigger_id"], d["outcome"], bool(d["holdout"]))
            for d in result.decisions
        }
        return cls(decisions, {o["trigger_id"]: _conversion(o) for o in result.outcomes})

    @classmethod
    def of_records(
        cls, decisions: list[dict[str, Any]], outcomes: list[dict[str, Any]]
    ) -> Expected:
        """What one deployment published, held as the measure of another (the same
        history through another number of workers)."""
        verdicts: dict[DecisionKey, Verdict] = {}
        for d in decisions:
            verdicts.setdefault(
                decision_key(d), (d["trigger_id"], d["outcome"], bool(d["holdout"]))
            )
        return cls(verdicts, {o["trigger_id"]: _conversion(o) for o in outcomes})

    @property
    def delivered(self) -> set[str]:
        return {tid for tid, outcome, _ in self.decisions.values() if outcome == "delivered"}


def _conversion(o: dict[str, Any]) -> tuple[str, str, str, str]:
    return (o["group"], o["due_at"], o["converted_at"], o["order_id"])


@dataclass
class FaultCounts:
    """Decisions of a run after a fault, measured against the reference."""

    compared: int  # decisions the reference has
    published: int  # records on the decisions topic
    lost: int  # reference decisions missing from the topic
    unexpected: int  # decisions on the topic the reference does not have
    wrong_verdict: int  # a decision (or a repeat of it) with another trigger_id or verdict
    duplicated: int  # repeats of a decision (same key)
    nudges_missing: int  # delivered decisions without a nudge
    nudges_unexpected: int  # nudges of no delivered decision
    nudges_duplicated: int
    outcomes_wrong: int  # conversions missing, unexpected or different

    def line(self, name: str) -> str:
        return (
            f"{name}: {self.compared} decisions compared, {self.lost} lost, "
            f"{self.duplicated} duplicated, {self.unexpected} unexpected, "
            f"{self.wrong_verdict} with another verdict; nudges: {self.nudges_missing} missing, "
            f"{self.nudges_duplicated} duplicated; outcomes wrong: {self.outcomes_wrong}"
        )


async def compare_with_reference(
    dep: Deployment,
    expected: Expected,
    name: str,
    *,
    due_until: int | None = None,
    **extra: Any,
) -> FaultCounts:
    """Read the decisions, nudges and outcomes topics and hold them to the reference.

    Prints and records (``artifacts/fault-results.json``) the counts, then asserts:
    nothing lost, nothing the reference lacks, every repeat of a decision with the
    same ``trigger_id`` and verdict, the nudges exactly the delivered decisions,
    the conversions exactly the reference's.  With ``due_until`` (micros) only
    records of firings due at or before it are compared (a live run, read while
    later steps are still coming due).
    """
    topics = dep.config.topics

    def due(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if due_until is None:
            return records
        return [r for r in records if to_micros(parse_timestamp(r["due_at"])) <= due_until]

    decisions = due(await dep.read(topics.decisions))
    nudges = due(await dep.read(topics.nudges))
    outcomes = due(await dep.read(topics.outcomes))
    got: dict[DecisionKey, Verdict] = {}
    wrong: list[tuple[DecisionKey, Verdict, Verdict | None]] = []
    for d in decisions:
        key, verdict = decision_key(d), (d["trigger_id"], d["outcome"], bool(d["holdout"]))
        first = got.setdefault(key, verdict)
        if first != verdict or expected.decisions.get(key, verdict) != verdict:
            wrong.append((key, verdict, expected.decisions.get(key)))
    nudge_ids = [n["trigger_id"] for n in nudges]
    delivered = expected.delivered
    conv: dict[str, tuple[str, str, str, str]] = {}
    conv_wrong = 0
    for o in outcomes:
        if conv.setdefault(o["trigger_id"], _conversion(o)) != _conversion(o):
            conv_wrong += 1  # a repeat must be the same record
    conv_wrong += sum(
        1 for k in set(conv) | set(expected.outcomes) if conv.get(k) != expected.outcomes.get(k)
    )
    counts = FaultCounts(
        compared=len(expected.decisions),
        published=len(decisions),
        lost=len(set(expected.decisions) - set(got)),
        unexpected=len(set(got) - set(expected.decisions)),
        wrong_verdict=len(wrong),
        duplicated=len(decisions) - len(got),
        nudges_missing=len(delivered - set(nudge_ids)),
        nudges_unexpected=len(set(nudge_ids) - delivered),
        nudges_duplicated=len(nudge_ids) - len(set(nudge_ids)),
        outcomes_wrong=conv_wrong,
    )
    record_counts(name, counts, **extra)
    assert counts.lost == 0 and counts.unexpected == 0, counts.line(name) + (
        f"\nlost e.g. {sorted(set(expected.decisions) - set(got))[:3]}"
        f"\nunexpected e.g. {sorted(set(got) - set(expected.decisions))[:3]}"
    )
    assert not wrong, f"{counts.line(name)}\n(key, got, reference) e.g. {wrong[:3]}"
    assert counts.nudges_missing == 0 and counts.nudges_unexpected == 0, counts.line(name)
    assert counts.outcomes_wrong == 0, counts.line(name)
    return counts


def record_counts(name: str, counts: FaultCounts, **extra: Any) -> None:
    """Print the counts and keep them in ``artifacts/fault-results.json`` under ``name``."""
    print(counts.line(name), *(f"{k}={v}" for k, v in extra.items()))
    path = ARTIFACTS / "fault-results.json"
    path.parent.mkdir(exist_ok=True)
    try:
        results = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        results = {}
    results[name] = {**counts.__dict__, **extra}
    path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))


async def published(dep: Deployment, topic: str) -> int:
    """Records on ``topic`` so far (all partitions)."""
    return sum((await end_offsets(dep.config, [topic])).values())


async def wait_published(
    dep: Deployment,
    topic: str,
    at_least: int,
    workers: Iterable[WorkerProcess],
    timeout: float = 300.0,
) -> int:
    """Poll every 0.1 s until ``topic`` holds ``at_least`` records; returns the count."""
    watched = list(workers)
    deadline = time.monotonic() + timeout
    while (count := await published(dep, topic)) < at_least:
        for w in watched:
            assert w.alive, f"{w.name} died\n{w.log_tail()}"
        assert time.monotonic() < deadline, f"{topic}: {count} of {at_least} after {timeout} s"
        await asyncio.sleep(0.1)
    return count
