"""The API's Redis pool (api.pool) on a real Redis: past its connections a request waits for
one instead of failing, gives up after its timeout, and every slot comes back, errors too."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError

from api.pool import BoundedPool
from tests.conftest import RedisServer


def test_a_burst_past_the_connections_waits_for_one(redis_server: RedisServer) -> None:
    async def burst() -> list[object]:
        pool = BoundedPool.from_url(redis_server.url, max_connections=2, timeout=5)
        client = redis.asyncio.Redis.from_pool(pool)
        try:
            # Each BLPOP holds its connection 0.2 s: 6 of them on 2 connections take 3 turns.
            started = time.monotonic()
            replies = await asyncio.gather(*(client.blpop(["nothing"], 0.2) for _ in range(6)))
            assert time.monotonic() - started >= 0.55
            assert len(pool._in_use_connections) + len(pool._available_connections) <= 2
            # A command that fails (wrong type) gives its slot back.
            await client.set("text", "x")
            for _ in range(4):
                with pytest.raises(redis.ResponseError):
                    await client.lpush("text", "y")
            return [*replies, await client.ping()]
        finally:
            await client.aclose()

    assert asyncio.run(burst()) == [None] * 6 + [True]


def test_a_request_that_finds_no_connection_in_time_fails(redis_server: RedisServer) -> None:
    async def starved() -> None:
        pool = BoundedPool.from_url(redis_server.url, max_connections=1, timeout=0.1)
        client = redis.asyncio.Redis.from_pool(pool)
        try:
            hold = asyncio.create_task(client.blpop(["nothing"], 1))
            await asyncio.sleep(0.05)
            with pytest.raises(RedisConnectionError, match="No connection available"):
                await client.ping()
            await hold
            assert await client.ping() is True
        finally:
            await client.aclose()

    asyncio.run(starved())
