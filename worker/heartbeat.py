"""A worker's presence in Redis, read by `ttsfleet fleet`.

Why a heartbeat hash rather than Celery's remote control alone: `inspect().stats()` is a
broadcast that waits out a fixed timeout for replies, says nothing of model, device or
recent throughput, and a worker busy in a long batch answers late and looks absent. One
hash per node (`tasks.keys.WORKER`, TTL three beats) is one round trip to read, carries
jobs/s over the last minute, and disappears on its own when the worker dies. Remote
control stays for what needs the worker itself: draining it (fleet.view).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import redis

from tasks import keys, redis_url

log = logging.getLogger(__name__)

# The main process sets these before the pool forks, so children inherit them.
_node: str | None = None
_redis_url: str | None = None


def configure(node: str, redis_url: str) -> None:
    global _node, _redis_url
    _node, _redis_url = node, redis_url


def celery_counts() -> tuple[int, int]:
    """(jobs finished, jobs held) from Celery's bookkeeping in the worker's main process."""
    from celery.worker import state

    return state.all_total_count[0] - len(state.active_requests), len(state.reserved_requests)


class Heartbeat:
    """Writes the node's hash every `interval_s`; keeps a minute of samples for the rate."""

    def __init__(
        self,
        client: redis.Redis,
        node: str,
        fields: Mapping[str, str | int | float],
        counts: Callable[[], tuple[int, int]] = celery_counts,
        interval_s: float = 5.0,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = client
        self._node = node
        self._key = keys.worker_key(node)
        self._fields = dict(fields)
        self._counts = counts
        self.interval_s = interval_s
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque(maxlen=int(window_s / interval_s) + 1)

    def beat(self) -> None:
        done, held = self._counts()
        now = self._clock()
        self._samples.append((now, done))
        first_t, first_done = self._samples[0]
        rate = (done - first_done) / (now - first_t) if now > first_t else 0.0
        pipe = self._redis.pipeline(transaction=False)
        fields: dict[Any, Any] = {
            **self._fields,
            "beat": now,
            "jobs_done": done,
            "in_flight": held,
            "jobs_per_s": round(rate, 3),
        }
        pipe.hset(self._key, mapping=fields)
        pipe.expire(self._key, max(1, int(3 * self.interval_s)))
        pipe.zadd(keys.WORKERS, {self._node: now})
        pipe.execute()

    def run(self, stop: threading.Event) -> None:
        while True:
            try:
                self.beat()
            except redis.RedisError as exc:
                log.warning("heartbeat: %s", exc)
            if stop.wait(self.interval_s):
                return

    def leave(self) -> None:
        """A clean shutdown removes the node at once rather than after its TTL."""
        try:
            self._redis.delete(self._key)
            self._redis.zrem(keys.WORKERS, self._node)
        except redis.RedisError:
            pass


def count_recycle() -> None:
    """Called in the process being recycled (a child): one more on the node's hash."""
    if _node is None or _redis_url is None:
        return
    client = redis_url.client(_redis_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        pipe = client.pipeline(transaction=False)
        pipe.hincrby(keys.worker_key(_node), "recycles", 1)
        pipe.ttl(keys.worker_key(_node))
        _, ttl = pipe.execute()
        if ttl == -1:  # the hash had expired: this made a new one, which must expire too
            client.expire(keys.worker_key(_node), 60)
    except redis.RedisError as exc:
        log.warning("could not count a recycle: %s", exc)
    finally:
        client.close()
