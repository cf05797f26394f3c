"""The Redis read model: one hash per customer, for messaging services at send time.

Layout and fields are a contract, documented in ``schemas/readmodel.md`` (and
``schemas/readmodel.json``); :data:`FIELDS` is what the writer writes and a
unit test holds the two together.

The customer agent never awaits Redis.  It calls :meth:`ReadModelWriter.mark`
after each table write (a dict assignment, so repeated updates of one customer
coalesce into one Redis write), and a background task flushes the dirty set in
batches, one Lua script call per batch that writes each hash only when
the stored ``version`` is lower than the new one, which makes writes idempotent
and lets a resync, a rebuild and the live writer race without ever putting an
older state over a newer one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from agents.contract import CUSTOMER_KEY_PREFIX
from agents.core.clock import WallClock
from agents.core.engine import Engine
from agents.core.scores import inputs_of, model_at, stored_inputs
from agents.core.state import CustomerState
from agents.core.timeutil import iso
from streams.config import Config

log = logging.getLogger(__name__)


# Every field of a customer hash, always all present ("" = no value).
FIELDS: tuple[str, ...] = (
    "customer_id",
    "stage",
    "orders",
    "last_order_at",
    "last_activity_at",
    "pending",
    "opted_out",
    "holdout",
    "score_inputs",
    "version",
    "updated_at",
)
# ``updated_at`` is when the hash was written, not part of the table state.
STATE_FIELDS: tuple[str, ...] = tuple(f for f in FIELDS if f != "updated_at")

# The version guard, for a whole batch in one call: KEYS[i] = the hash key of row
# i; ARGV[1] = a JSON array whose i-th item is [new version, field, value, ...] for
# KEYS[i].  Each row, in order, is written only when the stored ``version`` is lower
# than its own; returns how many were written.  One command per batch rather than
# one per hash: the client packs a key and a share of one JSON text per row instead
# of 22 arguments (docs/performance.md, "The read model's writes").
WRITE_ALL_IF_NEWER = """
local rows = cjson.decode(ARGV[1])
local written = 0
for i, key in ipairs(KEYS) do
  local row = rows[i]
  local cur = redis.call('HGET', key, 'version')
  if not (cur and tonumber(cur) >= tonumber(row[1])) then
    redis.call('HSET', key, unpack(row, 2))
    written = written + 1
  end
end
return written
"""


# A partition -> the engine running its rules versions (agents.customer).
EngineOf = Callable[[int], Engine]


def customer_key(prefix: str, customer_id: str) -> str:
    return f"{prefix}customer:{customer_id}"


def pending_nudges(engine: Engine, state: CustomerState) -> list[dict[str, Any]]:
    """The next due step of each rule, soonest first."""
    return [
        {"rule": d.rule, "step": d.step, "due_at": iso(d.due_at)} for d in engine.pending(state)
    ]


def _time(t: int | None) -> str:
    return iso(t) if t is not None else ""


def hash_fields(state: CustomerState, engine: Engine, *, now: int) -> dict[str, str]:
    """The hash a sender reads, as Redis stores it (strings; booleans "1"/"0")."""
    return {
        "customer_id": state.customer_id,
        "stage": state.stage,
        "orders": str(state.orders),
        "last_order_at": _time(state.last_order_at),
        "last_activity_at": _time(state.last_activity_at),
        "pending": orjson.dumps(pending_nudges(engine, state)).decode(),
        "opted_out": "1" if state.opted_out else "0",
        "holdout": "1" if engine.in_holdout(state.customer_id) else "0",
        "score_inputs": score_inputs_field(state, engine),
        "version": str(state.version),
        "updated_at": iso(now),
    }


def score_inputs_field(state: CustomerState, engine: Engine) -> str:
    """The customer's score inputs and model as JSON, "" without a ``[model]`` or an
    order: scores decay, so the reader computes them at its own instant
    (schemas/readmodel.md "Fields", docs/prediction.md "Scores").  The model is that
    of the rules version the row is judged by (its last switch, else the seed)."""
    versions = engine.history.versions
    at = state.rules_at
    model = model_at(versions, at) if at is not None else model_at(versions[:1], 0)
    if model is None:
        return ""
    inputs = inputs_of(state)
    stored = None if inputs is None else stored_inputs(inputs, model)
    return "" if stored is None else orjson.dumps(stored).decode()


def row_fields(
    raw: bytes, engine: Engine, *, now: int, engine_of: EngineOf | None = None
) -> dict[str, str]:
    """:func:`hash_fields` of a serialised table row, without decoding the parts of
    the row the hash does not show (dedup memory, pending events, firings, counts):
    the flush runs this for every changed customer.  ``engine_of`` gives the engine
    of the row's partition, which runs that partition's rules versions (docs/rules.md
    "Changing rules"); the row's last switch (``rv``) says which one judges it."""
    d = orjson.loads(raw)
    state = CustomerState.summary_from_dict(d)
    # The scores' spend per currency (score_inputs_field), which the summary skips.
    state.spend = d.get("spend", {})
    state.order_currencies = d.get("order_currencies", {})
    if engine_of is not None:
        state.rules_at = d.get("rv")
        engine = engine_of(int(d.get("partition", 0)))
    return hash_fields(state, engine, now=now)


def connect(config: Config) -> aioredis.Redis:
    """An asyncio client for the configured URL (redis://, rediss:// for TLS, unix://).

    Short timeouts: an unreachable Redis must turn into a quick error the writer
    backs off from, not a task stuck for minutes.
    """
    kwargs: dict[str, Any] = {"socket_timeout": 5.0, "socket_connect_timeout": 2.0}
    if config.redis_password:
        kwargs["password"] = config.redis_password
    client: aioredis.Redis = aioredis.Redis.from_url(config.redis, **kwargs)
    return client


class HashWriter:
    """Writes customer states with the version guard, a batch per script call."""

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        engine: Engine,
        engine_of: EngineOf | None = None,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.engine = engine
        self.engine_of = engine_of
        self.script = client.register_script(WRITE_ALL_IF_NEWER)

    async def write(self, states: Sequence[bytes], now: int) -> tuple[int, int]:
        """Write serialised states; returns (written, skipped as not newer)."""
        if not states:
            return 0, 0
        keys: list[str] = []
        rows: list[list[str]] = []
        for raw in states:
            fields = row_fields(raw, self.engine, now=now, engine_of=self.engine_of)
            keys.append(customer_key(self.prefix, fields["customer_id"]))
            row = [fields["version"]]
            for item in fields.items():
                row += item
            rows.append(row)
        written = int(await self.script(keys=keys, args=[orjson.dumps(rows)]))
        return written, len(rows) - written


class ReadModelWriter:
    """The worker's background writer: a coalescing dirty set flushed to Redis.

    ``owned()`` gives the customer partitions this worker owns right now and
    ``ready()`` says whether table recovery is complete; ``scan(p)`` iterates the
    rows of partition ``p`` (and only those: streams.faust_adapter.TableStore).
    Partitions that become owned are resynced from the table in the background
    (the version guard makes that harmless when Redis is already current); dirty
    entries of revoked partitions are dropped, because the new owner resyncs them
    from its recovered table.
    """

    def __init__(
        self,
        *,
        connect: Callable[[], aioredis.Redis],
        prefix: str,
        engine: Engine,
        wall_clock: WallClock,
        owned: Callable[[], set[int]],
        ready: Callable[[], bool],
        scan: Callable[[int], Iterable[tuple[str, bytes]]],
        flush_interval: float = 0.5,
        batch_size: int = 500,
        max_dirty: int = 200_000,
        max_backoff: float = 5.0,
        engine_of: EngineOf | None = None,
    ) -> None:
        self._connect = connect
        self.prefix = prefix
        self.engine = engine
        self.engine_of = engine_of
        self.wall_clock = wall_clock
        self.owned = owned
        self.ready = ready
        self.scan = scan
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.max_dirty = max_dirty
        self.max_backoff = max_backoff
        # customer_id -> (partition, newest state bytes): insertion-ordered, so the
        # oldest change is flushed first.
        self.dirty: dict[str, tuple[int, bytes]] = {}
        self.dirty_since: float | None = None  # monotonic time the set became non-empty
        self.resync: set[int] = set()
        self.known: set[int] = set()
        # Changes dropped when the dirty set overflowed; they come back through a
        # resync of every owned partition, and count as lag until it is done.
        self.overflowed = 0
        self.redis_up = False
        self.written = 0
        self.skipped = 0
        self.errors = 0
        self.resyncs = 0
        self.last_flush_at: int | None = None
        self._writer: HashWriter | None = None

    # --- called from the agent and the rebalance handlers (never awaits) -----------

    def mark(self, partition: int, customer_id: str, value: bytes) -> None:
        if not self.dirty:
            self.dirty_since = time.monotonic()
        self.dirty[customer_id] = (partition, value)
        if len(self.dirty) > self.max_dirty:
            self._overflow()

    def revoke(self, partitions: Iterable[int]) -> None:
        gone = set(partitions)
        if not gone:
            return
        self.dirty = {c: v for c, v in self.dirty.items() if v[0] not in gone}
        self.resync -= gone
        # Forgetting them makes a quick revoke + re-assign show up as "new" on the
        # next pass, which resyncs what was dropped here.
        self.known -= gone

    @property
    def lag(self) -> int:
        """Customers whose newest state is not in Redis yet (as far as known)."""
        return len(self.dirty) + (self.overflowed if self.resync else 0)

    @property
    def oldest_age(self) -> float:
        """Seconds since the oldest change still waiting was made (0 when none)."""
        if not self.dirty or self.dirty_since is None:
            return 0.0
        return time.monotonic() - self.dirty_since

    def _overflow(self) -> None:
        log.warning(
            "read model: %d customers waiting for Redis; dropping them and resyncing "
            "every owned partition from the table when Redis is back",
            len(self.dirty),
        )
        self.overflowed += len(self.dirty)
        self.dirty.clear()
        self.resync |= self.known

    # --- the background task ------------------------------------------------------------

    async def run(self) -> None:
        backoff = self.flush_interval
        down_since: float | None = None
        while True:
            await asyncio.sleep(backoff)
            if not self.ready():
                continue
            self._track_assignment()
            try:
                await self.flush()
            except (RedisError, OSError) as exc:
                self.errors += 1
                self.redis_up = False
                self._writer = None
                # Redis may come back empty (restarted without persistence, failed
                # over): resync every owned partition first thing when it answers
                # again; the version guard skips whatever it still holds.
                self.resync |= self.known
                if down_since is None:
                    down_since = time.monotonic()
                    log.warning("read model: Redis unavailable (%s); will retry", exc)
                backoff = min(self.max_backoff, backoff * 2)
                continue
            if down_since is not None:
                log.warning("read model: Redis back after %.0f s", time.monotonic() - down_since)
                down_since = None
            backoff = self.flush_interval

    def _track_assignment(self) -> None:
        owned = self.owned()
        new, gone = owned - self.known, self.known - owned
        if gone:
            self.revoke(gone)
        self.resync |= new
        self.known = owned

    async def flush(self) -> None:
        """Resync what needs it, then write the whole dirty set; raises on Redis errors."""
        writer = self._writer
        if writer is None:
            client = self._connect()
            await client.ping()
            writer = self._writer = HashWriter(client, self.prefix, self.engine, self.engine_of)
        self.redis_up = True
        if self.resync:
            await self._resync(writer)
        await self._drain(writer)
        self.last_flush_at = self.wall_clock()

    async def _drain(self, writer: HashWriter) -> None:
        while self.dirty:
            batch = list(islice(self.dirty.items(), self.batch_size))
            for cid, _ in batch:
                del self.dirty[cid]
            if not self.dirty:
                self.dirty_since = None
            try:
                written, skipped = await writer.write([v for _, (_, v) in batch], self.wall_clock())
            except BaseException:
                # Put back what was taken unless the agent marked something newer.
                for cid, entry in batch:
                    self.dirty.setdefault(cid, entry)
                if self.dirty and self.dirty_since is None:
                    self.dirty_since = time.monotonic()
                raise
            self.written += written
            self.skipped += skipped

    async def _resync(self, writer: HashWriter) -> None:
        partitions = sorted(self.resync)
        for partition in partitions:
            n = 0
            for key, value in self.scan(partition):
                if partition not in self.known:
                    break  # revoked while we were writing: the new owner resyncs it
                if not key.startswith(CUSTOMER_KEY_PREFIX):
                    continue
                cid = key[len(CUSTOMER_KEY_PREFIX) :]
                if cid not in self.dirty:  # a dirty entry is at least as new
                    if not self.dirty:
                        self.dirty_since = time.monotonic()
                    self.dirty[cid] = (partition, value)
                n += 1
                if len(self.dirty) >= 4 * self.batch_size:
                    # Stream a big partition out instead of holding all of it.
                    await self._drain(writer)
                elif n % 2000 == 0:
                    await asyncio.sleep(0)  # keep the event loop (and the agents) going
            # Only now: a Redis error above leaves the partition queued for a retry.
            self.resync.discard(partition)
            self.resyncs += 1
            log.info("read model: resynced %d customers of partition %d", n, partition)
        if not self.resync:
            self.overflowed = 0
