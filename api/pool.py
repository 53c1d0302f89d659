"""The API's Redis connection pool: at most `max_connections`, and a request past them
waits (up to `timeout` seconds) for one to come back instead of failing.

redis-py's BlockingConnectionPool does that with an asyncio.Condition and a timeout scope on
every checkout, even when a connection is free: a tenth of a status poll's time on one core
(bench.api's profile). Here a free slot costs one uncontended semaphore acquire; only a
request that finds every slot taken waits, under the timeout.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import redis.asyncio
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError


class BoundedPool(redis.asyncio.ConnectionPool):
    def __init__(self, *, timeout: float = 5.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._slots = asyncio.Semaphore(self.max_connections)
        self._wait_s = timeout
        # Connections this pool handed out: each holds one slot until it comes back.
        self._held: set[AbstractConnection] = set()

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> BoundedPool:
        pool = super().from_url(url, **kwargs)
        assert isinstance(pool, BoundedPool)
        return pool

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        if self._slots.locked():
            try:
                async with asyncio.timeout(self._wait_s):
                    await self._slots.acquire()
            except TimeoutError as exc:
                raise RedisConnectionError("No connection available.") from exc
        else:
            await self._slots.acquire()
        try:
            connection = cast(
                AbstractConnection,
                await super().get_connection(*args, **kwargs),  # type: ignore[no-untyped-call]
            )
        except BaseException:
            # A failed checkout gave its connection back itself (not one of `_held`).
            self._slots.release()
            raise
        self._held.add(connection)
        return connection

    async def release(self, connection: AbstractConnection) -> None:
        try:
            await super().release(connection)
        finally:
            if connection in self._held:
                self._held.discard(connection)
                self._slots.release()
