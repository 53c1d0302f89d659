"""Callers waiting for a job to end (`Prefer: wait=N`, `POST /v1/audio/speech`), all served
by one Redis subscriber per API process.

The store's terminal transitions PUBLISH the job id on `keys.JOB_ENDED_CHANNEL` (tasks.store).
One task per process SUBSCRIBEs and wakes the callers waiting for that id; each woken caller
reads its job once. So a thousand waiters cost one Redis connection and no polling, and the
request pool (api.app) stays free for submits and reads. A caller registers before it first
reads the job, so an end published in between still wakes it; when the subscriber
(re)connects, every caller re-reads, since ends published while it was away were lost.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable

import redis.asyncio
import redis.exceptions
from prometheus_client import Gauge

from api.pool import bounded_pool
from tasks import keys
from tasks.jobs import Job

log = logging.getLogger(__name__)

WAIT_MAX_S = 60
RECONNECT_S = 0.5
_LOST = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

WAITING = Gauge(
    "ttsfleet_api_waiting_requests",
    "Requests waiting for their job to end (Prefer: wait, /v1/audio/speech)",
    multiprocess_mode="livesum",
)

# RFC 7240: `Prefer: respond-async, wait=10`; preferences are comma-separated, parameters
# after ';'. `wait` takes delta-seconds, optionally quoted, of any length.
_WAIT = re.compile(r'^\s*wait\s*=\s*"?(\d+)"?\s*$', re.IGNORECASE)


def prefer_wait(headers: list[str]) -> int | None:
    """Seconds the `Prefer` headers ask to wait (any number past WAIT_MAX_S counts as it);
    None if they do not, or say it malformed (RFC 7240: a preference not understood is
    ignored)."""
    for header in headers:
        for preference in header.split(","):
            match = _WAIT.match(preference.split(";")[0])
            if match:
                # More digits than WAIT_MAX_S has is past it: `int()` never sees a long one
                # (past 4,300 digits it raises).
                digits = match.group(1).lstrip("0") or "0"
                longest = len(str(WAIT_MAX_S))
                return WAIT_MAX_S if len(digits) > longest else min(int(digits), WAIT_MAX_S)
    return None


class JobWaiters:
    """The process's subscriber and the callers it wakes; start() once the loop runs."""

    def __init__(self, redis_url: str) -> None:
        self._url = redis_url
        self._waiting: dict[str, list[asyncio.Future[None]]] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        return sum(len(futures) for futures in self._waiting.values())

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._listen())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def wait(self, job_id: str, timeout_s: float, read: Callable[[], Awaitable[Job]]) -> Job:
        """The job once it is terminal, or as it is after `timeout_s`; `read` fetches it
        (its errors, a 404 or an unreachable Redis, are the caller's)."""
        self.start()
        deadline = time.monotonic() + timeout_s
        job: Job | None = None
        WAITING.inc()
        try:
            while True:
                woken = self._register(job_id)
                try:
                    try:
                        job = await read()
                    except _LOST:
                        # A pooled connection that died with Redis fails once; while the
                        # wait lasts, read again shortly rather than fail the caller.
                        if job is None or time.monotonic() >= deadline:
                            raise
                        await asyncio.sleep(RECONNECT_S)
                        continue
                    remaining = deadline - time.monotonic()
                    if job.status.is_terminal() or remaining <= 0:
                        return job
                    try:
                        await asyncio.wait_for(woken, remaining)
                    except TimeoutError:
                        pass  # one last read, above
                finally:
                    self._unregister(job_id, woken)
        finally:
            WAITING.dec()

    def _register(self, job_id: str) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(job_id, []).append(future)
        return future

    def _unregister(self, job_id: str, future: asyncio.Future[None]) -> None:
        futures = self._waiting.get(job_id, [])
        if future in futures:
            futures.remove(future)
        if not futures:
            self._waiting.pop(job_id, None)

    def _wake(self, job_id: str) -> None:
        for future in self._waiting.get(job_id, []):
            if not future.done():
                future.set_result(None)

    def _wake_all(self) -> None:
        for job_id in list(self._waiting):
            self._wake(job_id)

    async def _listen(self) -> None:
        while True:
            client = redis.asyncio.Redis.from_pool(
                bounded_pool(
                    self._url, decode_responses=True, socket_connect_timeout=2,
                    socket_keepalive=True,
                )
            )  # fmt: skip
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(keys.JOB_ENDED_CHANNEL)
                self._wake_all()
                while True:
                    message = await pubsub.get_message(timeout=5.0)
                    if message is not None and message["type"] == "message":
                        self._wake(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Waiters keep waiting: woken now, they would only fail to read. The next
                # subscription wakes them all, since ends published meanwhile were lost.
                log.warning("job-end subscriber lost Redis (%s); reconnecting", exc)
                await asyncio.sleep(RECONNECT_S)
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]
                await client.aclose()
