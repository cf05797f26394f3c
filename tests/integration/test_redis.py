"""The session's real redis-server: a read-model style hash round trip."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from streams.local.stack import StackInfo

pytestmark = pytest.mark.integration


async def test_hash_round_trip_on_a_prefixed_key(
    local_stack: StackInfo, unique_prefix: str
) -> None:
    client = aioredis.from_url(local_stack.redis, decode_responses=True)
    key = f"{unique_prefix}customer:c42"
    try:
        await client.hset(key, mapping={"customer_id": "c42", "orders": "2", "stage": "repeat"})
        await client.hincrby(key, "orders", 1)

        assert await client.hgetall(key) == {
            "customer_id": "c42",
            "orders": "3",
            "stage": "repeat",
        }
        assert await client.keys(f"{unique_prefix}*") == [key]
    finally:
        await client.delete(key)
        await client.aclose()


async def test_local_redis_listens_on_loopback_without_persistence(local_stack: StackInfo) -> None:
    client = aioredis.from_url(local_stack.redis, decode_responses=True)
    try:
        assert local_stack.redis.startswith("redis://127.0.0.1:")
        config = await client.config_get("*")
        assert config["bind"] == "127.0.0.1"
        assert config["save"] == ""
        assert config["appendonly"] == "no"
    finally:
        await client.aclose()
