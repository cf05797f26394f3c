"""``summary/1``: what the workers know, for the dashboard and for people.

Two scopes (docs/operations.md, "Summary"):

* ``local``: this worker's counters (since it started) and the report over the
  table partitions it owns;
* ``cluster``: the same over every worker that owns customer partitions: each
  answers ``/retention/summary/part`` with its counters and its report inputs
  (:mod:`streams.web.merge`), counts add and the report is computed once over
  all of them, so it equals the report over the whole table.  A worker that does
  not answer within :data:`PART_TIMEOUT` is listed with the error, and its
  partitions as missing.

Reading the table never runs on the event loop: the rows are scanned, decoded
and reduced in a worker thread (RocksDB: straight from its per-partition
databases; the memory store: from a copy taken on the loop).  Summaries are
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
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from agents.core.clock import NEVER, StreamClock
from agents.core.guardrails import OUTCOME_DELIVERED, SUPPRESSIONS
from agents.core.timeutil import iso
from agents.customer import CLOCK_KEY_PREFIX, CUSTOMER_KEY_PREFIX
from streams.web.merge import ReportInputs, merge_report

if TYPE_CHECKING:
    from streams.app import RetentionApp

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


# --- one worker's part ----------------------------------------------------------------


def _watermarks(rapp: RetentionApp, owned: Iterable[int]) -> dict[int, int | None]:
    """Each owned partition's stream clock: the live one, else the stored one."""
    proc = rapp.processor
    out: dict[int, int | None] = {}
    for p in owned:
        rt = proc.runtimes.get(p)
        mark = rt.watermark if rt is not None else NEVER
        if mark <= NEVER:
            raw = rapp.store.get(CLOCK_KEY_PREFIX + str(p))
            if raw is not None:
                lateness = proc.engine.settings.stream_allowed_lateness
                mark = StreamClock.restore(proc.sources, lateness, orjson.loads(raw)).watermark()
        out[p] = mark if mark > NEVER else None
    return out


def local_part(rapp: RetentionApp) -> dict[str, Any]:
    """This worker's counters and clocks (cheap: no table scan)."""
    proc, ingest, rm = rapp.processor, rapp.ingest, rapp.readmodel
    owned = sorted(rapp.owned_partitions())
    marks = _watermarks(rapp, owned) if rapp.config.clock == "stream" else {}
    return {
        "schema": SCHEMA_PART,
        "worker": rapp.web_address,
        "url": rapp.canonical_url,
        "partitions": owned,
        "watermarks": {str(p): m for p, m in marks.items()},
        "events": proc.counters["events"],
        "duplicates": proc.counters["duplicates"],
        "outcomes": proc.counters["outcomes"],
        "decisions": [[r, s, o, n] for (r, s, o), n in sorted(proc.decision_counts.items())],
        "triggers": [[d, r, s, n] for (d, r, s), n in sorted(rapp.triggers_by_day.items())],
        "dead_letters": dict(sorted(ingest.dead_letters.items())),
        "lag": rapp.consumer_lag(),
        "read_model": {
            "redis_up": rm.redis_up,
            "lag": rm.lag,
            "last_flush_at": rm.last_flush_at,
        },
    }


def _is_rocksdb(rapp: RetentionApp) -> bool:
    return getattr(rapp.table.data, "_db_for_partition", None) is not None


def _reduce(
    items: Iterable[tuple[int, Iterable[tuple[str, bytes]]]], owned: set[int], as_of: int
) -> dict[str, Any]:
    acc = ReportInputs(as_of)
    for partition, rows in items:
        for key, value in rows:
            if not key.startswith(CUSTOMER_KEY_PREFIX):
                continue
            d = orjson.loads(value)
            p = d.get("partition")
            # A memory store scans every partition at once.
            if p in owned and (partition < 0 or p == partition):
                acc.add_state(d)
    return acc.finish().to_json()


async def local_inputs(rapp: RetentionApp, partitions: list[int], as_of: int) -> dict[str, Any]:
    """Report inputs over this worker's rows of ``partitions``, built off the loop."""
    owned = set(partitions)
    if _is_rocksdb(rapp):
        # RocksDB iterators read a consistent view while the agent keeps writing.
        items: list[tuple[int, Iterable[tuple[str, bytes]]]] = [
            (p, rapp.store.scan(p)) for p in partitions
        ]
    else:
        # A dict must not change while it is iterated: copy it here, reduce there.
        items = [(-1, list(rapp.store.scan(0)))] if partitions else []
    return await asyncio.to_thread(_reduce, items, owned, as_of)


# --- summaries from parts ---------------------------------------------------------------


def stream_as_of(parts: Iterable[Mapping[str, Any]]) -> int | None:
    """The stream clock every partition of these parts has reached, if all have one."""
    marks: list[int | None] = [m for p in parts for m in p["watermarks"].values()]
    known = [m for m in marks if m is not None]
    if not known or len(known) < len(marks):
        return None
    return min(known)


def summary_of(
    rapp: RetentionApp,
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
    triggers: Counter[tuple[str, str, int]] = Counter()
    dead: Counter[str] = Counter()
    lag: Counter[str] = Counter()
    for p in parts:
        for r, s, o, n in p["decisions"]:
            by_rule[(r, s, o)] += n
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
    report = merge_report(inputs, as_of=as_of, settings=rapp.config.report)
    scope_doc: dict[str, Any] = {
        "scope": scope,
        "worker": rapp.web_address,
        "partitions": partitions,
        "all_partitions": partitions == list(range(rapp.config.partitions)),
    }
    if workers is not None:
        scope_doc["workers"] = workers
        scope_doc["missing_partitions"] = sorted(
            set(range(rapp.config.partitions)) - set(partitions)
        )
    return {
        "schema": SCHEMA_SUMMARY,
        "generated_at": iso(now),
        "scope": scope_doc,
        "clock": {
            "mode": rapp.config.clock,
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
    }


async def build_local(rapp: RetentionApp) -> dict[str, Any]:
    """This worker's summary; the report is as of its partitions' stream clock
    (stream mode, once every owned partition has one) or now."""
    now = rapp.wall_clock()
    part = local_part(rapp)
    as_of = (stream_as_of([part]) if rapp.config.clock == "stream" else None) or now
    inputs = await local_inputs(rapp, part["partitions"], as_of)
    return await asyncio.to_thread(
        summary_of, rapp, [part], [inputs], scope="local", as_of=as_of, now=now
    )


# --- the cluster fan-out ------------------------------------------------------------------


def customer_owners(rapp: RetentionApp) -> dict[str, list[int]]:
    """Canonical URL -> customer partitions, from Faust's table metadata."""
    changelog = rapp.table.changelog_topic.get_topic_name()
    try:
        hosts = rapp.app.router.table_metadata(rapp.table.name)
    except Exception:  # no assignment yet
        return {}
    out = {str(url): sorted(t.get(changelog, ())) for url, t in hosts.items()}
    return {url: ps for url, ps in out.items() if ps}


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
    rapp: RetentionApp, local_inputs_at: Callable[[int], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    """The cluster summary: two rounds over the partition owners - counters and
    clocks (to agree on ``as_of``), then everyone's report inputs at that instant."""
    now = rapp.wall_clock()
    me = rapp.canonical_url
    owners = customer_owners(rapp)
    if not owners:
        owners = {me: sorted(rapp.owned_partitions())}
    session = rapp.app.http_client
    errors: dict[str, str] = {}

    async def ask(url: str, as_of: int | None) -> dict[str, Any]:
        if url == me:
            part = local_part(rapp)
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
    if rapp.config.clock == "stream":
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
        rapp,
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

    def __init__(self, rapp: RetentionApp, max_age: float = MAX_AGE) -> None:
        self.rapp = rapp
        self.local = Revalidating(lambda: build_local(rapp), max_age)
        self.cluster = Revalidating(lambda: build_cluster(rapp, self.inputs_at), max_age)
        self._lock = asyncio.Lock()
        self._inputs: tuple[int, float, dict[str, Any]] | None = None  # as_of, until, inputs

    async def inputs_at(self, as_of: int) -> dict[str, Any]:
        """Report inputs as of ``as_of``: one scan at a time; a recent one for the
        same instant is reused (every worker's cluster summary asks for the same)."""
        async with self._lock:
            cached = self._inputs
            if cached and cached[0] == as_of and time.monotonic() < cached[1]:
                return cached[2]
            started = time.monotonic()
            partitions = sorted(self.rapp.owned_partitions())
            inputs = await local_inputs(self.rapp, partitions, as_of)
            took = time.monotonic() - started
            # Reused like a summary: for MAX_AGE, or longer for a big table.
            self._inputs = (as_of, started + max(MAX_AGE, took / BUSY_SHARE), inputs)
            return inputs

    async def summary(self, scope: str) -> dict[str, Any]:
        cache = self.cluster if scope == "cluster" else self.local
        value, age = await cache.get()
        return {**value, "freshness": cache.freshness(age, self.rapp.wall_clock())}

    async def part(self, as_of: int | None) -> dict[str, Any]:
        part = local_part(self.rapp)
        if as_of is not None:
            part["inputs"] = await self.inputs_at(as_of)
        return part
