"""The read-model writer against the session's real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import orjson
import pytest
import redis.asyncio as aioredis

from agents.core.engine import Engine
from agents.core.state import CustomerState
from streams.config import Config
from streams.local.stack import StackInfo
from streams.worker.readmodel import HashWriter, ReadModelWriter, customer_key, hash_fields

pytestmark = pytest.mark.integration

T0 = 1_772_000_000_000_000


def raw(cid: str, version: int, orders: int = 1, partition: int = 0) -> bytes:
    s = CustomerState(customer_id=cid, partition=partition, version=version)
    s.orders, s.first_order_at, s.last_order_at, s.last_activity_at = orders, T0, T0, T0
    s.stage = "new" if orders == 1 else "repeat"
    return orjson.dumps(s.to_dict())


@pytest.fixture
async def client(local_stack: StackInfo, unique_prefix: str) -> AsyncIterator[aioredis.Redis]:
    c = aioredis.Redis.from_url(local_stack.redis, decode_responses=True)
    try:
        yield c
    finally:
        keys = [k async for k in c.scan_iter(match=f"{unique_prefix}*")]
        if keys:
            await c.delete(*keys)
        await c.aclose()


async def test_an_older_state_never_overwrites_a_newer_one(
    client: aioredis.Redis, unique_prefix: str
) -> None:
    writer = HashWriter(client, unique_prefix, Engine(Config().core))
    key = f"{unique_prefix}customer:c-1"

    assert await writer.write([raw("c-1", 5, orders=2)], T0) == (1, 0)
    assert await writer.write([raw("c-1", 4, orders=1)], T0) == (0, 1)  # late, older
    assert await writer.write([raw("c-1", 5, orders=2)], T0) == (0, 1)  # a repeat
    stored = await client.hgetall(key)
    assert stored["version"] == "5" and stored["orders"] == "2" and stored["stage"] == "repeat"

    # In one pipeline too: the newest wins whatever the order.
    assert await writer.write([raw("c-1", 7, orders=3), raw("c-1", 6)], T0) == (1, 1)
    assert (await client.hgetall(key))["version"] == "7"


async def test_the_background_writer_resyncs_owned_partitions_and_flushes_marks(
    local_stack: StackInfo, client: aioredis.Redis, unique_prefix: str
) -> None:
    table = {0: [(f"c/a{i}", raw(f"a{i}", 1)) for i in range(1200)], 1: [("clock/1", b"{}")]}

    def scan(p: int) -> Iterable[tuple[str, bytes]]:
        return iter(table.get(p, []))

    writer = ReadModelWriter(
        connect=lambda: aioredis.Redis.from_url(local_stack.redis),
        prefix=unique_prefix,
        engine=Engine(Config().core),
        wall_clock=lambda: T0,
        owned=lambda: {0, 1},
        ready=lambda: True,
        scan=scan,
        batch_size=100,
    )
    writer._track_assignment()
    writer.mark(0, "a7", raw("a7", 2, orders=2))  # newer than the table row scanned later
    await writer.flush()
    assert writer.lag == 0 and not writer.resync and writer.redis_up
    assert writer.written == 1200 and writer.last_flush_at == T0
    keys = [k async for k in client.scan_iter(match=f"{unique_prefix}customer:*")]
    assert len(keys) == 1200
    assert (await client.hgetall(f"{unique_prefix}customer:a7"))["orders"] == "2"
    assert writer._writer is not None
    await writer._writer.client.aclose()


# The per-hash script the batched one replaced (one EVALSHA per hash, in a pipeline).
ONE_HASH_IF_NEWER = """
local cur = redis.call('HGET', KEYS[1], 'version')
if cur and tonumber(cur) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""


async def test_a_batch_leaves_redis_as_one_script_call_per_hash_did(
    client: aioredis.Redis, unique_prefix: str
) -> None:
    engine = Engine(Config().core)
    odd = ["c\x00nul", 'q"uo\\te', "new\nline", "ünï 🎉", "\u2028sep", "c/1", "x" * 128]
    rows = [raw(cid, v, orders=1 + v % 3) for v in (3, 1, 3, 5, 4) for cid in odd]
    rows += [raw(f"n{i}", 1 + i % 4, orders=1 + i % 5) for i in range(300)]
    rows += [raw("n7", 9), raw("n7", 2), raw("n8", 1)]  # a newer, an older, a repeat
    reference = client.register_script(ONE_HASH_IF_NEWER)
    old, new = f"{unique_prefix}old:", f"{unique_prefix}new:"
    writer = HashWriter(client, new, engine)
    for start in range(0, len(rows), 97):
        chunk = rows[start : start + 97]
        pipe = client.pipeline(transaction=False)
        for r in chunk:
            fields = hash_fields(CustomerState.from_dict(orjson.loads(r)), engine, now=T0)
            args = [fields["version"], *(x for item in fields.items() for x in item)]
            await reference(keys=[customer_key(old, fields["customer_id"])], args=args, client=pipe)
        results = [int(r) for r in await pipe.execute()]
        assert await writer.write(chunk, T0) == (sum(results), len(results) - sum(results))
    old_keys = sorted([k async for k in client.scan_iter(match=f"{old}*")])
    assert len(old_keys) == len(odd) + 300
    for key in old_keys:
        stored = await client.hgetall(key)
        assert await client.hgetall(new + key[len(old) :]) == stored, key
    assert len([k async for k in client.scan_iter(match=f"{new}*")]) == len(old_keys)
