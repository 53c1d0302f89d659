"""A process's presence in Redis, for the health check of roles that are no Celery node.

The dispatcher and the callbacks worker answer no ping, and a container's health check
must not depend on which dispatcher holds the lease: each process scores itself
(`host/pid`) in one sorted set per role from its own loop, so a beat proves the loop runs
and reaches Redis. `ttsfleet health ROLE` (fleet.health) looks for a recent beat from its
own host. A clean exit removes the member at once; a killed process goes stale.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

import redis

from tasks import keys

# Members older than this are dropped by the next beat of any process of the role.
FORGET_S = 3600.0


def member(host: str | None = None, pid: int | None = None) -> str:
    return f"{host or socket.gethostname()}/{pid or os.getpid()}"


class Presence:
    """Beats at most once per `interval_s`; call `beat()` from the role's loop."""

    def __init__(
        self,
        client: redis.Redis,
        role: str,
        interval_s: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = client
        self._key = keys.alive_key(role)
        self._member = member()
        self.interval_s = interval_s
        self._clock = clock
        self._last = 0.0

    def beat(self) -> None:
        """Raises redis.RedisError like the loop's own Redis calls (the caller handles it)."""
        now = self._clock()
        if now - self._last < self.interval_s:
            return
        pipe = self._redis.pipeline(transaction=False)
        pipe.zadd(self._key, {self._member: now})
        pipe.zremrangebyscore(self._key, 0, now - FORGET_S)
        pipe.execute()
        self._last = now

    def leave(self) -> None:
        try:
            self._redis.zrem(self._key, self._member)
        except redis.RedisError:
            pass  # it goes stale by itself


def recent(client: redis.Redis, role: str, host: str, within_s: float, now: float) -> list[str]:
    """Members of `role` on `host` that beat within the last `within_s` seconds."""
    members = client.zrangebyscore(keys.alive_key(role), now - within_s, "+inf")
    names = [m.decode() if isinstance(m, bytes) else str(m) for m in members]
    return [name for name in names if name.rpartition("/")[0] == host]
