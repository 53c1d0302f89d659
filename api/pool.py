"""The API's Redis connection pool: at most `max_connections`, and a request past them
waits (up to `timeout` seconds) for one to come back instead of failing.

redis-py's BlockingConnectionPool does that with an asyncio.Condition and a timeout scope on
every checkout, even when a connection is free: a tenth of a status poll's time on one core
(bench.api's profile). Here a free slot costs one uncontended semaphore acquire; only a
request that finds every slot taken waits, under the timeout. Under Sentinel (a sentinel://
URL, tasks.redis_url) the same slots bound redis-py's sentinel pool, whose connections ask
the sentinels for the master.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import redis.asyncio
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError

from tasks.redis_url import sentinel_target


class _Slots(redis.asyncio.ConnectionPool):
    """At most `max_connections` out at once; a checkout past them waits `timeout` s."""

    def _bound(self, timeout: float) -> None:
        self._slots = asyncio.Semaphore(self.max_connections)
        self._wait_s = timeout
        # Connections this pool handed out: each holds one slot until it comes back.
        self._held: set[AbstractConnection] = set()

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


class BoundedPool(_Slots):
    def __init__(self, *, timeout: float = 5.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._bound(timeout)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> BoundedPool:
        pool = super().from_url(url, **kwargs)
        assert isinstance(pool, BoundedPool)
        return pool


class BoundedSentinelPool(_Slots, SentinelConnectionPool):
    def __init__(
        self, service_name: str, manager: Sentinel, *, timeout: float = 5.0, **kwargs: Any
    ) -> None:
        super().__init__(service_name, manager, **kwargs)  # type: ignore[no-untyped-call]
        self._bound(timeout)

    async def disconnect(self, inuse_connections: bool = True) -> None:
        """The master's connections, and the ones its sentinels were asked on."""
        await super().disconnect(inuse_connections)
        for sentinel in self.sentinel_manager.sentinels:
            await sentinel.aclose()


def bounded_pool(url: str, timeout: float = 5.0, **kwargs: Any) -> _Slots:
    """The pool of the fleet's Redis at `url` (its master, under Sentinel); `kwargs` as
    redis-py's connection arguments."""
    target = sentinel_target(url)
    if target is None:
        return BoundedPool.from_url(url, timeout=timeout, **kwargs)
    manager = Sentinel(  # type: ignore[no-untyped-call]
        target.sentinels, sentinel_kwargs=target.sentinel_kwargs(kwargs)
    )
    return BoundedSentinelPool(
        target.master, manager, timeout=timeout, password=target.password, db=target.db,
        **kwargs,
    )  # fmt: skip
