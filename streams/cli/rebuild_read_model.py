"""retention rebuild-read-model: repopulate the Redis read model from the tables.

Reads the customer table's changelog topic (``{app_id}-customers-changelog``) from
the beginning to its current end and writes every customer's newest state with
the same version-guarded script the workers use, so it is safe to run while
workers are writing: a hash is only ever replaced by a newer state.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass

from redis.exceptions import RedisError

from agents.contract import CUSTOMER_KEY_PREFIX
from agents.core.engine import Engine
from streams.config import Config, load_config
from streams.ops.tables import changelog_batches
from streams.worker.readmodel import HashWriter, connect

# Records coalesced per customer before a write: bounds memory on any table size.
CHUNK = 5000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--replace",
        action="store_true",
        help=(
            "delete every customer hash under RETENTION_REDIS_PREFIX first (needed only "
            "when the tables were reset, so versions restarted below what Redis holds)"
        ),
    )


@dataclass
class RebuildStats:
    records: int = 0
    customers: int = 0
    written: int = 0
    skipped: int = 0
    deleted: int = 0


async def rebuild(config: Config, *, replace: bool = False) -> RebuildStats:
    stats = RebuildStats()
    client = connect(config)
    await client.ping()  # fail early and clearly when Redis is not there
    writer = HashWriter(client, config.redis_prefix, Engine(config.core))
    if replace:
        async for key in client.scan_iter(match=f"{config.redis_prefix}customer:*", count=1000):
            stats.deleted += int(await client.unlink(key))
    seen: set[str] = set()
    chunk: dict[str, bytes] = {}
    try:
        async for batch in changelog_batches(config):
            for raw_key, value in batch:
                stats.records += 1
                key = raw_key.decode("utf-8", "replace")
                # Clock rows and tombstones are not customers.
                if not key.startswith(CUSTOMER_KEY_PREFIX) or value is None:
                    continue
                chunk[key] = value
                seen.add(key)
            if len(chunk) >= CHUNK:
                await _write(writer, chunk, stats)
        await _write(writer, chunk, stats)
    finally:
        await client.aclose()
    stats.customers = len(seen)
    return stats


async def _write(writer: HashWriter, chunk: dict[str, bytes], s: RebuildStats) -> None:
    values = list(chunk.values())
    chunk.clear()
    now = int(time.time() * 1_000_000)
    for i in range(0, len(values), 500):
        written, skipped = await writer.write(values[i : i + 500], now)
        s.written += written
        s.skipped += skipped


def run(args: argparse.Namespace) -> int:
    config = load_config()
    started = time.monotonic()
    try:
        stats = asyncio.run(rebuild(config, replace=args.replace))
    except (OSError, RedisError) as exc:
        print(f"retention: rebuild-read-model failed: {exc}", file=sys.stderr)
        return 1
    print(
        f"read {stats.records} changelog records ({stats.customers} customers) in "
        f"{time.monotonic() - started:.1f} s; wrote {stats.written} hashes, "
        f"{stats.skipped} already current"
        + (f"; deleted {stats.deleted} first" if args.replace else "")
    )
    return 0
