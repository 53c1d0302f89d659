"""The dispatcher: moves jobs from per-tenant pending lists into the Celery queues, fairly.

Why a dispatcher and not one Celery queue per tenant: Celery workers consume a fixed set
of queues named at start-up, so per-tenant queues would mean adding consumers to every
worker whenever a tenant appears, and kombu's Redis transport still drains its
priority lists before it looks at the next queue. Instead the API puts a job's id in a
list per (model, priority, tenant) and a ring of the tenants that have pending jobs; this
process serves, for each model, the highest priority that has work, one job per tenant in
turn, and keeps the model's Celery queue shallow (`dispatch_queue_depth`, about twice what
the workers prefetch). A tenant's 100,000-job backlog therefore waits in its own list, and
another tenant's job waits behind at most one shallow queue and the batches in flight.

Nothing is lost if the dispatcher dies mid-move: one script pops a job from its pending
list and records it in the model's `dispatching` hash; the message is sent afterwards and
only then is the entry deleted. A dispatcher starting up sends whatever that hash still
holds, so a crash can at worst send a job twice, which the store's claim absorbs (a
terminal job is acked without running, and the audio key is deterministic). A lease
in Redis keeps a second dispatcher from interleaving with the first.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterable
from typing import cast

import redis
from celery import Celery
from kombu.exceptions import OperationalError

from scheduler.reconciler import Reconciler
from tasks import keys, redis_url, scripts
from tasks.app import broker_lists, send_synthesis
from tasks.jobs import PRIORITY_ORDER, Priority
from tasks.presence import Presence
from tasks.settings import Settings

log = logging.getLogger(__name__)

# Pending entries a single call may skip (canceled while pending) before it returns.
_SKIP_BUDGET = 1000

# scheduler/lua/: each file says its KEYS and ARGV.
_TAKE = scripts.load("scheduler", "dispatch_take")
_LEASE = scripts.load("scheduler", "dispatch_lease")


class Dispatcher:
    """Moves pending jobs into Celery queues, round-robin across tenants."""

    def __init__(
        self,
        client: redis.Redis,
        celery: Celery,
        models: Iterable[str],
        depth: int,
        lease_ms: int = 10_000,
        reconciler: Reconciler | None = None,
        reconcile_interval_s: float = 5.0,
    ) -> None:
        self._redis = client
        self._celery = celery
        self._models = list(models)
        self._depth = depth
        self._lease_ms = lease_ms
        self._token = secrets.token_hex(8)
        self._take = client.register_script(_TAKE)
        self._lease = client.register_script(_LEASE)
        self._reconciler = reconciler
        self._reconcile_interval_s = reconcile_interval_s

    @classmethod
    def from_settings(cls, settings: Settings, celery: Celery) -> Dispatcher:
        client = redis_url.client(
            settings.redis_url, decode_responses=True, socket_timeout=5, socket_connect_timeout=2
        )
        reconciler = Reconciler(client, celery, settings.models, settings.job_lease_s)
        return cls(
            client, celery, settings.models, settings.dispatch_queue_depth,
            reconciler=reconciler, reconcile_interval_s=settings.reconcile_interval_s,
        )  # fmt: skip

    def hold_lease(self) -> bool:
        """Take or extend the lease; only the holder moves jobs."""
        return bool(self._lease(keys=[keys.DISPATCHER_LEASE], args=[self._token, self._lease_ms]))

    def release_lease(self) -> None:
        """Let a successor start at once instead of after the lease runs out."""
        try:
            if self._redis.get(keys.DISPATCHER_LEASE) == self._token:
                self._redis.delete(keys.DISPATCHER_LEASE)
        except redis.RedisError:
            pass  # it expires by itself

    def recover(self) -> int:
        """Send the jobs a previous dispatcher took but may not have sent."""
        sent = 0
        for model in self._models:
            entries = cast(dict[str, str], self._redis.hgetall(keys.dispatching_key(model)))
            moved = []
            for job_id, value in entries.items():
                tenant, _, priority = value.partition(" ")
                moved += [job_id, tenant, priority]
            sent += self._send(model, moved)
        if sent:
            log.warning("re-sent %d jobs a previous dispatcher had taken", sent)
        return sent

    def dispatch_once(self) -> int:
        """One pass over every model; returns how many jobs were sent."""
        sent = 0
        for model in self._models:
            args: list[str | int] = [self._depth, keys.job_key("")]
            for priority in PRIORITY_ORDER:
                args += [
                    keys.pending_tenants_key(model, priority.value),
                    keys.pending_key(model, priority.value, ""),
                    priority.value,
                ]
            args.append(_SKIP_BUDGET)
            moved = self._take(keys=[keys.dispatching_key(model), *broker_lists(model)], args=args)
            sent += self._send(model, list(moved))
        return sent

    def _send(self, model: str, moved: list[str]) -> int:
        if not moved:
            return 0
        with self._celery.producer_or_acquire() as producer:
            for i in range(0, len(moved), 3):
                job_id, tenant, priority = moved[i : i + 3]
                send_synthesis(
                    self._celery, job_id, tenant, model, Priority(priority), producer=producer
                )
        now = time.time()
        pipe = self._redis.pipeline(transaction=True)
        # Sent: the reconciler watches it from now on until it ends.
        pipe.zadd(keys.inflight_key(model), {job_id: now for job_id in moved[0::3]})
        pipe.hdel(keys.dispatching_key(model), *moved[0::3])
        pipe.execute()
        return len(moved) // 3

    def run(
        self,
        stop: threading.Event,
        idle_s: float = 0.01,
        max_idle_s: float = 0.1,
        wake_on_work: bool = True,
    ) -> None:
        """Until `stop` is set: hold the lease, recover once, then keep the queues topped up.

        After a pass that sent nothing it waits `idle_s`, doubling up to `max_idle_s` while
        passes stay empty, and back to `idle_s` once one sends: a fixed 10 ms poll cost an
        idle dispatcher half a core or more of a small host (a Lua call 100 times a second),
        CPU the synth workers on that host then lacked (deploy/README.md). New pending work
        ends the wait at once (`keys.DISPATCH_WAKE_CHANNEL`, published by the scripts that
        fill the pending lists): the poll remains for what frees room in a queue."""
        recovered = False
        wait_s = idle_s
        renewed = reconciled = 0.0
        # Every dispatcher beats, the standby too: its health check passes while it waits.
        presence = Presence(self._redis, "dispatcher")
        wake: redis.client.PubSub | None = None
        while not stop.is_set():
            try:
                presence.beat()
                now = time.monotonic()
                if now - renewed > self._lease_ms / 3000:
                    if not self.hold_lease():
                        recovered = False
                        if wake is not None:  # a standby reads no wake-ups: unsubscribed
                            wake.close()
                            wake = None
                        stop.wait(1.0)
                        continue
                    renewed = now
                if wake is None and wake_on_work:
                    # Subscribed before the pass: work admitted during it wakes the next wait.
                    wake = self._redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
                    wake.subscribe(keys.DISPATCH_WAKE_CHANNEL)
                if not recovered:
                    self.recover()
                    recovered = True
                if self._reconciler and now - reconciled > self._reconcile_interval_s:
                    self._reconciler.pass_once()
                    reconciled = now
                if self.dispatch_once() == 0:
                    # A wake-up ends the wait early but does not shorten the next: with a
                    # full queue, admissions must not make every wait 10 ms again.
                    _woken(stop, wake, wait_s)
                    wait_s = min(wait_s * 2, max_idle_s)
                else:
                    wait_s = idle_s
            except (redis.RedisError, OperationalError, OSError) as exc:
                log.warning("dispatcher: %s; retrying", exc)
                if wake is not None:
                    wake.close()
                    wake = None
                # What was taken but perhaps not sent goes out again on the next pass.
                recovered = False
                renewed = 0.0
                stop.wait(1.0)
        if wake is not None:
            wake.close()
        presence.leave()
        self.release_lease()


def _woken(stop: threading.Event, wake: redis.client.PubSub | None, wait_s: float) -> bool:
    """Wait up to `wait_s` for a wake-up (or, without a subscription, for `stop`); True if
    one came (all that came are taken)."""
    if wake is None:
        stop.wait(wait_s)
        return False
    if wake.get_message(timeout=wait_s) is None:
        return False
    while wake.get_message(timeout=0) is not None:
        pass
    return True
