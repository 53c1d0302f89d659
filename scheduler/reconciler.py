"""The reconciler (DESIGN §6): sends again the jobs whose message died with a worker.

Kombu's Redis transport returns an unacked message only after the visibility timeout
(1 h), and a broker restart can lose a message outright. The choice here, recovering in
seconds: each worker process keeps a short-TTL lease per job whose message it holds
(worker.lease); the dispatcher, already a singleton, runs this pass every few seconds over
the jobs it has sent (`inflight`, per model). A job that is neither terminal, nor leased,
nor in its model's queue lists, nor waiting out a retry countdown on a worker (an unacked
message with a future `eta`: Celery keeps those in its timer, not among the requests a
worker leases) is a suspect, unless it is a book that follows an identical one still being
made (worker.cache); still one after `job_lease_s` (longer than any gap between a worker
popping a message and leasing it), its stale `unacked` entries are deleted and a fresh
message is sent. Never two live runs: a claim refuses a job whose lease
names another live run (tasks.store), and the store's transitions make the effect exactly once.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import redis
from celery import Celery

from tasks import keys
from tasks.app import broker_lists, send_synthesis
from tasks.jobs import Priority
from tasks.store import TERMINAL

log = logging.getLogger(__name__)


def _headers(raw: str) -> dict[str, Any] | None:
    try:
        payload = json.loads(raw)
        if isinstance(payload, list):  # unacked entries: [message, exchange, routing key]
            payload = payload[0]
        headers = payload["headers"]
        return headers if isinstance(headers, dict) and "id" in headers else None
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def _message_id(raw: str) -> str | None:
    headers = _headers(raw)
    return str(headers["id"]) if headers is not None else None


def _eta(headers: dict[str, Any]) -> float | None:
    """When a retry's countdown ends (epoch seconds), if the message has one. Celery writes
    it with its zone; one without is UTC, as Celery reads it."""
    try:
        if not headers["eta"]:
            return None
        eta = datetime.fromisoformat(str(headers["eta"]))
    except (KeyError, ValueError):
        return None
    return (eta if eta.tzinfo else eta.replace(tzinfo=UTC)).timestamp()


@dataclass
class Unacked:
    """A job's deliveries that a worker holds unacknowledged, as kombu records them."""

    tags: list[str] = field(default_factory=list)
    # The latest retry countdown among them: a worker keeps such a message in its timer, not
    # among the requests it leases, until then.
    eta: float | None = None


class Reconciler:
    """One `pass_once` finds orphaned jobs and sends them again; the dispatcher calls it."""

    def __init__(
        self,
        client: redis.Redis,
        celery: Celery,
        models: Iterable[str],
        lease_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = client
        self._celery = celery
        self._models = list(models)
        self._lease_s = lease_s
        self._clock = clock
        # Job id -> when it was first seen orphaned.
        self._suspects: dict[str, float] = {}

    def pass_once(self) -> int:
        """Returns how many jobs were sent again."""
        return sum(self._reconcile(model) for model in self._models)

    def _reconcile(self, model: str) -> int:
        inflight = keys.inflight_key(model)
        ids = cast(list[str], self._redis.zrange(inflight, 0, -1))
        if not ids:
            return 0
        pipe = self._redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(keys.job_key(job_id), ["status", "units"])
            pipe.exists(keys.job_lease_key(job_id))
        answers = pipe.execute()
        done, orphans = [], []
        for i, job_id in enumerate(ids):
            (status, units), leased = answers[2 * i], answers[2 * i + 1]
            # A job that fanned out (tasks.units) is in flight as its units, not itself.
            if status is None or status in TERMINAL or units not in (None, "null"):
                done.append(job_id)
            elif leased:
                self._suspects.pop(job_id, None)
            else:
                orphans.append(job_id)
        if done:
            self._redis.zrem(inflight, *done)
            for job_id in done:
                self._suspects.pop(job_id, None)
        if not orphans:
            return 0
        queued = self._queued_ids(model)
        unacked = self._unacked()
        now = self._clock()
        wall = time.time()
        resent = 0
        unsent = []
        for job_id in orphans:
            held = unacked.get(job_id, Unacked())
            # Queued, or waiting out a retry countdown on a worker: not orphaned. A countdown
            # whose worker died is one once it is over.
            if job_id in queued or (held.eta is not None and held.eta > wall):
                self._suspects.pop(job_id, None)
            else:
                unsent.append(job_id)
        for job_id in self._not_following(unsent):
            held = unacked.get(job_id, Unacked())
            first = self._suspects.setdefault(job_id, now)
            if now - first >= self._lease_s:
                self._resend(model, job_id, held.tags)
                self._suspects.pop(job_id, None)
                resent += 1
        if resent:
            log.warning("reconciler: sent %d orphaned %s jobs again", resent, model)
        return resent

    def _not_following(self, orphans: list[str]) -> list[str]:
        """The orphans less the books that follow an identical book still being made
        (worker.cache.ResultCache.lead): those have no message on purpose until it ends."""
        if not orphans:
            return orphans
        found = cast(
            list[str | None], self._redis.mget([keys.book_follows_key(job) for job in orphans])
        )
        following = {job: leader for job, leader in zip(orphans, found, strict=True) if leader}
        if not following:
            return orphans
        pipe = self._redis.pipeline(transaction=False)
        for leader in following.values():
            pipe.hget(keys.job_key(leader), "status")
        statuses = pipe.execute()
        waiting = {
            job for job, status in zip(following, statuses, strict=True)
            if status in ("running", "queued")  # as worker/lua/book_lead.lua follows
        }  # fmt: skip
        for job_id in waiting:
            self._suspects.pop(job_id, None)
        return [job_id for job_id in orphans if job_id not in waiting]

    def _queued_ids(self, model: str) -> set[str]:
        pipe = self._redis.pipeline(transaction=False)
        for name in broker_lists(model):
            pipe.lrange(name, 0, -1)
        return {m for raws in pipe.execute() for raw in raws if (m := _message_id(raw))}

    def _unacked(self) -> dict[str, Unacked]:
        raw = cast(dict[str, str], self._redis.hgetall(keys.KOMBU_UNACKED))
        found: dict[str, Unacked] = {}
        for tag, message in raw.items():
            headers = _headers(message)
            if headers is None:
                continue
            held = found.setdefault(str(headers["id"]), Unacked())
            held.tags.append(tag)
            if (eta := _eta(headers)) is not None:
                held.eta = max(eta, held.eta or eta)
        return found

    def _resend(self, model: str, job_id: str, stale_tags: list[str]) -> None:
        values = cast(
            list[str | None], self._redis.hmget(keys.job_key(job_id), ["tenant", "priority"])
        )
        tenant, priority = (json.loads(v) if v else None for v in values)
        if stale_tags:
            # The dead worker's deliveries: kombu must not restore them after the timeout too.
            pipe = self._redis.pipeline(transaction=False)
            pipe.hdel(keys.KOMBU_UNACKED, *stale_tags)
            pipe.zrem(keys.KOMBU_UNACKED_INDEX, *stale_tags)
            pipe.execute()
        send_synthesis(
            self._celery, job_id, str(tenant), model, Priority(priority or Priority.NORMAL.value)
        )
        self._redis.zadd(keys.inflight_key(model), {job_id: time.time()})
