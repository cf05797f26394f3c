"""``summary/1``: what the workers know, for the dashboard and for people.

Two scopes (docs/operations.md, "summary/1"):

* ``local``: this worker's counters (since it started) and the report over the
  table partitions it owns;
* ``cluster``: the same over every worker that owns customer partitions: each
  answers ``/retention/summary/part`` with its counters and its report inputs
  (:mod:`agents.core.report_merge`), counts add and the report is computed once over
  all of them, so it equals the report over the whole table.  A worker that does
  not answer within :data:`PART_TIMEOUT` is listed with the error, and its
  partitions as missing.

Everything here reads the worker through :mod:`streams.worker.observe` (its snapshot and
:class:`~streams.worker.observe.ObservedWorker`), never the Faust app.  Reading the table
never runs on the event loop: the rows are scanned, decoded and reduced in a
worker thread (RocksDB: straight from its per-partition databases; the memory
store: from a copy taken on the loop, see streams/faust_adapter.py).  Summaries are
served stale-while-revalidate (:class:`Revalidating`): the last one is answered
at once with its age, and a request that finds it older than :data:`MAX_AGE`
starts one rebuild in the background.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson

from agents.contract import CUSTOMER_KEY_PREFIX
from agents.core.clock import clock_mode
from agents.core.guardrails import (
    OUTCOME_CANCELLED,
    OUTCOME_DELIVERED,
    OUTCOME_OUTSIDE_WINDOW,
    SUPPRESSIONS,
)
from agents.core.report_merge import ReportInputs, merge_report
from agents.core.scores import ScoreModel, model_at
from agents.core.timeutil import MAX_DURATION, iso, to_micros
from streams.config import Config
from streams.worker.observe import ObservedWorker, PartitionRows, Snapshot

log = logging.getLogger(__name__)

SCHEMA_SUMMARY = "summary/1"
SCHEMA_PART = "summary-part/1"
PART_PATH = "/retention/summary/part"
# A summary is served for this long before a request triggers a rebuild...
MAX_AGE = 1.0
# ...or longer for a big table: rebuilding takes at most this share of the time,
# so a dashboard left open does not keep a core (and the GIL) busy.
BUSY_SHARE = 0.25
# How long the cluster summary waits for each worker's part.
PART_TIMEOUT = 5.0
# The largest part a worker may send (report inputs grow ~15 bytes per repeater).
MAX_PART_BYTES = 16 * 1024 * 1024
SCOPES = ("local", "cluster")
# Report inputs kept for this many recent instants (a cluster summary asks each
# worker for one instant; a few workers building at once ask for a few).
INPUTS_KEPT = 4
# The instants a part may be asked for: what a timestamp can be, with room for the
# longest window (a setting's duration) on either side, so no date overflows.
AS_OF_MIN = to_micros(datetime(1, 1, 1, tzinfo=UTC)) + MAX_DURATION
AS_OF_MAX = to_micros(datetime(9999, 12, 31, tzinfo=UTC)) - MAX_DURATION


def parse_as_of(raw: str) -> int:
    """The ``as_of`` of a part request, in microseconds; ValueError says why not."""
    try:
        as_of = int(raw)
    except ValueError:
        raise ValueError("as_of must be microseconds since the epoch") from None
    if not AS_OF_MIN <= as_of <= AS_OF_MAX:
        raise ValueError(
            f"as_of must be between {AS_OF_MIN} ({iso(AS_OF_MIN)}) "
            f"and {AS_OF_MAX} ({iso(AS_OF_MAX)})"
        )
    return as_of


# --- one worker's part ----------------------------------------------------------------


def local_part(worker: ObservedWorker, snap: Snapshot | None = None) -> dict[str, Any]:
    """This worker's counters and clocks (cheap: no table scan)."""
    s = snap or worker.snapshot()
    rm = s.read_model
    return {
        "schema": SCHEMA_PART,
        "worker": s.worker,
        "url": s.url,
        "partitions": list(s.owned),
        "watermarks": {str(p): m for p, m in s.watermarks.items()},
        "events": s.events,
        "duplicates": s.duplicates,
        "outcomes": s.outcomes,
        "decisions": [[r, st, o, n] for (r, st, o), n in sorted(s.decisions.items())],
        "versions": [[r, v, o, n] for (r, v, o), n in sorted(s.decisions_by_version.items())],
        "triggers": [[d, r, st, n] for (d, r, st), n in sorted(s.triggers_by_day.items())],
        # Both agents' dead letters, as /metrics counts them (docs/operations.md "Operations").
        "dead_letters": dict(
            sorted((Counter(s.ingest_dead_letters) + Counter(s.customer_dead_letters)).items())
        ),
        "lag": dict(s.lag),
        "read_model": {
            "redis_up": rm.redis_up,
            "lag": rm.lag,
            "last_flush_at": rm.last_flush_at,
        },
    } | _windows_part(s)


def _windows_part(s: Snapshot) -> dict[str, Any]:
    """Send windows in a part, only when a rule has one (docs/send-windows.md "Outputs")."""
    if not s.windowed_rules:
        return {}
    return {
        "send_windows": {
            "rules": list(s.windowed_rules),
            "deferred": dict(sorted(s.deferred.items())),
            "hours": [[r, h, n] for (r, h), n in sorted(s.send_hours.items())],
        }
    }


def send_windows_block(
    parts: Iterable[Mapping[str, Any]], by_rule: Mapping[tuple[str, int, str], int]
) -> list[dict[str, Any]] | None:
    """Per rule with a send window: firings that waited for it, drops
    (``outside_window``), cancellations and delivered nudges by local send hour
    0-23 (the dashboard's chart); None when no worker has a rule with a window."""
    rules: set[str] = set()
    deferred: Counter[str] = Counter()
    hours: dict[str, list[int]] = {}
    for p in parts:
        block = p.get("send_windows")
        if block is None:
            continue
        rules.update(block["rules"])
        deferred.update(block["deferred"])
        for r, h, n in block["hours"]:
            hours.setdefault(r, [0] * 24)[h] += n
    if not rules:
        return None
    decided: Counter[tuple[str, str]] = Counter()
    for (r, _, o), n in by_rule.items():
        decided[(r, o)] += n
    return [
        {
            "rule": r,
            "deferred": deferred[r],
            OUTCOME_OUTSIDE_WINDOW: decided[(r, OUTCOME_OUTSIDE_WINDOW)],
            OUTCOME_CANCELLED: decided[(r, OUTCOME_CANCELLED)],
            "delivered_by_local_hour": hours.get(r, [0] * 24),
        }
        for r in sorted(rules | set(deferred) | set(hours))
    ]


def _reduce(
    items: Iterable[PartitionRows], as_of: int, models: Mapping[int, ScoreModel | None]
) -> dict[str, Any]:
    acc = ReportInputs(as_of, scoring=any(m is not None for m in models.values()))
    for partition, rows in items:  # each partition's own rows (streams.faust_adapter.TableStore)
        model = models.get(partition)
        for key, value in rows:
            if key.startswith(CUSTOMER_KEY_PREFIX):
                acc.add_state(orjson.loads(value), model)
    return acc.finish().to_json()


async def local_inputs(worker: ObservedWorker, partitions: list[int], as_of: int) -> dict[str, Any]:
    """Report inputs over this worker's rows of ``partitions``, built off the loop;
    each partition's P(alive) under the model of its rules at ``as_of``
    (docs/prediction.md "Scores")."""
    items = worker.partition_rows(partitions)
    models = {p: model_at(worker.engine_for(p).history.versions, as_of) for p in partitions}
    return await asyncio.to_thread(_reduce, items, as_of, models)


# --- summaries from parts ---------------------------------------------------------------


def stream_as_of(parts: Iterable[Mapping[str, Any]]) -> int | None:
    """The stream clock every partition of these parts has reached, if all have one."""
    marks: list[int | None] = [m for p in parts for m in p["watermarks"].values()]
    known = [m for m in marks if m is not None]
    if not known or len(known) < len(marks):
        return None
    return min(known)


def summary_of(
    config: Config,
    worker: str,
    parts: list[dict[str, Any]],
    inputs: list[dict[str, Any]],
    *,
    scope: str,
    as_of: int,
    now: int,
    workers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """``summary/1`` over the answered workers' parts and report inputs."""
    by_rule: Counter[tuple[str, int, str]] = Counter()
    by_version: Counter[tuple[str, str, str]] = Counter()
    triggers: Counter[tuple[str, str, int]] = Counter()
    dead: Counter[str] = Counter()
    lag: Counter[str] = Counter()
    for p in parts:
        for r, s, o, n in p["decisions"]:
            by_rule[(r, s, o)] += n
        # A worker of the release before has no versions in its part.
        for r, v, o, n in p.get("versions", ()):
            by_version[(r, v, o)] += n
        for d, r, s, n in p["triggers"]:
            triggers[(d, r, s)] += n
        dead.update(p["dead_letters"])
        for topic, n in p["lag"].items():
            lag[topic] += n
    by_outcome: Counter[str] = Counter()
    for (_, _, outcome), n in by_rule.items():
        by_outcome[outcome] += n
    partitions = sorted(q for p in parts for q in p["partitions"])
    known = [m for p in parts for m in p["watermarks"].values() if m is not None]
    watermark = min(known) if known else None
    flushes = [p["read_model"]["last_flush_at"] for p in parts]
    report = merge_report(inputs, as_of=as_of, settings=config.report)
    windows = send_windows_block(parts, by_rule)
    scope_doc: dict[str, Any] = {
        "scope": scope,
        "worker": worker,
        "partitions": partitions,
        "all_partitions": partitions == list(range(config.partitions)),
    }
    if workers is not None:
        scope_doc["workers"] = workers
        scope_doc["missing_partitions"] = sorted(set(range(config.partitions)) - set(partitions))
    return {
        "schema": SCHEMA_SUMMARY,
        "generated_at": iso(now),
        "scope": scope_doc,
        "clock": {
            "mode": config.clock,
            "watermark": iso(watermark) if watermark is not None else None,
        },
        "counts": {
            "customers": report["customers"],
            "events": sum(p["events"] for p in parts),
            "duplicates": sum(p["duplicates"] for p in parts),
            "dead_letters": sum(dead.values()),
            "decisions": sum(by_outcome.values()),
            "delivered": by_outcome[OUTCOME_DELIVERED],
            "outcomes": sum(p["outcomes"] for p in parts),
        },
        "decisions": [
            {"rule": r, "step": s, "outcome": o, "count": n}
            for (r, s, o), n in sorted(by_rule.items())
        ],
        "decisions_by_version": [
            {"rule": r, "rule_version": v or None, "outcome": o, "count": n}
            for (r, v, o), n in sorted(by_version.items())
        ],
        "suppression": {reason: by_outcome[reason] for reason in SUPPRESSIONS},
        "triggers_over_time": [
            {"date": d, "rule": r, "step": s, "count": n}
            for (d, r, s), n in sorted(triggers.items())
        ],
        "dead_letters": dict(sorted(dead.items())),
        "lag": {"total": sum(lag.values()), "by_topic": dict(sorted(lag.items()))},
        "read_model": {
            "enabled": True,
            "redis_up": all(p["read_model"]["redis_up"] for p in parts),
            "lag": sum(p["read_model"]["lag"] for p in parts),
            "last_flush_at": (
                iso(min(flushes)) if flushes and all(f is not None for f in flushes) else None
            ),
        },
        "report": report,
    } | ({} if windows is None else {"send_windows": windows})


async def build_local(worker: ObservedWorker) -> dict[str, Any]:
    """This worker's summary; the report is as of its partitions' stream clock
    (stream mode, once every owned partition has one) or now."""
    config = worker.config
    snap = worker.snapshot()
    now = snap.at
    part = local_part(worker, snap)
    as_of = (stream_as_of([part]) if clock_mode(config.clock).event_time else None) or now
    inputs = await local_inputs(worker, part["partitions"], as_of)
    return await asyncio.to_thread(
        summary_of, config, snap.worker, [part], [inputs], scope="local", as_of=as_of, now=now
    )


# --- the cluster fan-out ------------------------------------------------------------------


class PartError(Exception):
    """A worker's part could not be had."""


async def _get_json(
    session: aiohttp.ClientSession, url: str, params: dict[str, str]
) -> dict[str, Any]:
    try:
        async with session.get(
            url.rstrip("/") + PART_PATH,
            params=params,
            timeout=aiohttp.ClientTimeout(total=PART_TIMEOUT),
            headers={"Accept": "application/json"},
        ) as resp:
            body = bytearray()
            async for chunk in resp.content.iter_chunked(1 << 16):
                body += chunk
                if len(body) > MAX_PART_BYTES:
                    raise PartError(f"answer larger than {MAX_PART_BYTES} bytes")
            if resp.status != 200:
                raise PartError(f"HTTP {resp.status}: {bytes(body[:200]).decode(errors='replace')}")
    except TimeoutError:
        raise PartError(f"no answer within {PART_TIMEOUT:g} s") from None
    except aiohttp.ClientError as exc:
        raise PartError(f"{type(exc).__name__}: {exc}") from None
    doc: dict[str, Any] = await asyncio.to_thread(orjson.loads, bytes(body))
    return doc


async def build_cluster(
    worker: ObservedWorker, local_inputs_at: Callable[[int], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    """The cluster summary: two rounds over the partition owners - counters and
    clocks (to agree on ``as_of``), then everyone's report inputs at that instant."""
    config = worker.config
    snap = worker.snapshot()
    now, me = snap.at, snap.url
    owners = worker.owners()
    if not owners:
        owners = {me: list(snap.owned)}
    session = worker.http_client
    errors: dict[str, str] = {}

    async def ask(url: str, as_of: int | None) -> dict[str, Any]:
        if url == me:
            part = local_part(worker)
            if as_of is not None:
                part["inputs"] = await local_inputs_at(as_of)
            return part
        params = {} if as_of is None else {"as_of": str(as_of)}
        return await _get_json(session, url, params)

    async def round_(urls: list[str], as_of: int | None) -> dict[str, dict[str, Any]]:
        got = await asyncio.gather(*(ask(u, as_of) for u in urls), return_exceptions=True)
        out = {}
        for url, res in zip(urls, got, strict=True):
            if isinstance(res, BaseException):
                errors[url] = str(res) if isinstance(res, PartError) else repr(res)
            else:
                out[url] = res
        return out

    urls = sorted(owners)
    as_of = now
    if clock_mode(config.clock).event_time:
        first = await round_(urls, None)
        as_of = stream_as_of(first.values()) or now
        urls = sorted(first)
    parts = await round_(urls, as_of)
    workers = [
        {
            "url": url,
            "worker": parts[url]["worker"] if url in parts else None,
            "partitions": parts[url]["partitions"] if url in parts else owners[url],
            "answered": url in parts,
            "error": errors.get(url),
        }
        for url in sorted(owners)
    ]
    answered = [parts[u] for u in sorted(parts)]
    return await asyncio.to_thread(
        summary_of,
        config,
        snap.worker,
        answered,
        [p["inputs"] for p in answered],
        scope="cluster",
        as_of=as_of,
        now=now,
        workers=workers,
    )


# --- stale-while-revalidate ------------------------------------------------------------------


class Revalidating:
    """The last value of ``build`` with its age; one rebuild at a time, in the
    background, started by a request that finds the value older than ``max_age``
    and than the last build's duration / ``busy_share``."""

    def __init__(
        self,
        build: Callable[[], Awaitable[dict[str, Any]]],
        max_age: float,
        busy_share: float = BUSY_SHARE,
    ) -> None:
        self.build = build
        self.max_age = max_age
        self.busy_share = busy_share
        self.value: dict[str, Any] | None = None
        self.built_at = 0.0  # monotonic, when the build that made ``value`` started
        self.build_seconds = 0.0
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        started = time.monotonic()
        try:
            value = await self.build()
        except Exception as exc:  # keep serving the last value; say why it is old
            log.warning("summary build failed: %r", exc)
            self.last_error = repr(exc)
        else:
            self.value, self.built_at, self.last_error = value, started, None
            self.build_seconds = time.monotonic() - started
        finally:
            self._task = None

    def _start(self) -> asyncio.Task[None]:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
        return self._task

    @property
    def stale_after(self) -> float:
        return max(self.max_age, self.build_seconds / self.busy_share)

    @property
    def refreshing(self) -> bool:
        return self._task is not None

    async def get(self) -> tuple[dict[str, Any], float]:
        """The value and its age in seconds; waits only when there is none yet."""
        if self.value is None:
            await asyncio.shield(self._start())
            if self.value is None:
                raise RuntimeError(self.last_error or "summary build failed")
        elif time.monotonic() - self.built_at > self.stale_after:
            self._start()
        return self.value, time.monotonic() - self.built_at

    def freshness(self, age: float, wall_now: int) -> dict[str, Any]:
        return {
            "built_at": iso(wall_now - int(age * 1_000_000)),
            "age_seconds": round(age, 3),
            "build_seconds": round(self.build_seconds, 3),
            "stale_after_seconds": round(self.stale_after, 3),
            "refreshing": self.refreshing,
            "last_error": self.last_error,
        }


class Summaries:
    """The worker's summaries (local and cluster) and its part for the fan-out."""

    def __init__(self, worker: ObservedWorker, max_age: float = MAX_AGE) -> None:
        self.worker = worker
        self.local = Revalidating(lambda: build_local(worker), max_age)
        self.cluster = Revalidating(lambda: build_cluster(worker, self.inputs_at), max_age)
        self._lock = asyncio.Lock()
        self._inputs: dict[int, tuple[float, dict[str, Any]]] = {}  # as_of -> until, inputs
        self._next_scan = 0.0  # monotonic: the earliest start of the next table scan
        self.scans = 0

    async def inputs_at(self, as_of: int) -> dict[str, Any]:
        """Report inputs as of ``as_of``: one scan at a time; a recent one for the
        same instant is reused (every worker's cluster summary asks for the same).

        Each new instant is a full table scan, and anyone who can reach the port
        can ask for any instant: scans are spaced so that they take at most
        BUSY_SHARE of the time, however many instants are asked for."""
        async with self._lock:
            now = time.monotonic()
            self._inputs = {a: v for a, v in self._inputs.items() if now < v[0]}
            if as_of in self._inputs:
                return self._inputs[as_of][1]
            await asyncio.sleep(max(0.0, self._next_scan - now))
            started = time.monotonic()
            partitions = list(self.worker.snapshot().owned)
            inputs = await local_inputs(self.worker, partitions, as_of)
            self.scans += 1
            took = time.monotonic() - started
            self._next_scan = started + took / BUSY_SHARE
            # Reused like a summary: for MAX_AGE, or longer for a big table.
            self._inputs[as_of] = (started + max(MAX_AGE, took / BUSY_SHARE), inputs)
            for old in list(self._inputs)[:-INPUTS_KEPT]:
                del self._inputs[old]
            return inputs

    async def summary(self, scope: str) -> dict[str, Any]:
        cache = self.cluster if scope == "cluster" else self.local
        value, age = await cache.get()
        return {**value, "freshness": cache.freshness(age, self.worker.wall_clock())}

    async def part(self, as_of: int | None) -> dict[str, Any]:
        part = local_part(self.worker)
        if as_of is not None:
            part["inputs"] = await self.inputs_at(as_of)
        return part
