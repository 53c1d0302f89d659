"""Signed delivery of terminal events from the outbox, and the loop that runs it.

A plain process, not a Celery task. Retries must wait in the Redis outbox anyway (Celery
ETA/countdown tasks are run twice past the Redis visibility timeout, kombu#337), so a
Celery hop would only add a second queue to keep consistent with it; a loop that leases
due events straight from the outbox needs no broker, is never placed on a GPU worker,
and a crashed process's leases simply run out and the events return.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from callbacks.deadline import AttemptDeadline
from callbacks.outbox import CallbackState, Event, Outbox
from client.webhooks import signature_header
from tasks.errors import CallbackForbidden
from tasks.jobs import PROGRESS_EVENT, Job, utc_now
from tasks.presence import Presence
from tasks.settings import Settings
from tasks.ssrf import CallbackGuard, Destination
from tasks.store import JobStore
from tasks.tenants import TenantDirectory

log = logging.getLogger(__name__)

BODY_CAP_BYTES = 4096  # a receiver's answer is read this far and no further
RETRY_AFTER_STATUSES = {429, 502, 504}
MAX_RETRY_AFTER_S = 86400.0
USER_AGENT = "ttsfleet-webhooks/1"


def parse_schedule(text: str) -> list[float]:
    """`CALLBACK_RETRY_SCHEDULE`: seconds from the first attempt, one per attempt."""
    offsets = [float(part) for part in text.split(",") if part.strip()]
    if not offsets or offsets != sorted(offsets) or offsets[0] < 0:
        raise ValueError("TTSFLEET_CALLBACK_RETRY_SCHEDULE is ascending seconds, e.g. 0,5,300")
    return offsets


def retry_after_s(value: str | None, now: float) -> float | None:
    """A `Retry-After` header as seconds from now: delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return min(max(float(value.strip()), 0.0), MAX_RETRY_AFTER_S)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return min(max(when - now, 0.0), MAX_RETRY_AFTER_S)


@dataclass(frozen=True)
class Attempt:
    """What one POST came to: a status (None for no response) and any Retry-After."""

    status: int | None
    retry_after: str | None = None


class CallbackDelivery:
    """Signs and POSTs one event to the checked address, then settles it in the outbox."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        outbox: Outbox,
        tenants: TenantDirectory,
        guard: CallbackGuard,
        clock: Callable[[], float] = time.time,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.verify = verify  # certificate checks for https receivers; tests pass a CA
        self.store = store
        self.outbox = outbox
        self.tenants = tenants
        self.guard = guard
        self.schedule = parse_schedule(settings.callback_retry_schedule)
        self.timeout_s = settings.callback_timeout_s
        self.clock = clock

    def deliver(self, event: Event) -> CallbackState:
        job = self.store.get(event.job_id)
        if job is None or job.callback is None:
            self.outbox.settle(event, "failed", None)
            return "failed"
        if not self._secrets(job.tenant):
            # Never unsigned: the API refuses such a callback_url (callback_secret_missing);
            # a secret removed since is the operator's change, logged and not retried.
            log.error("tenant %s has no webhook secret: callback %s not sent", job.tenant, event.id)
            self.outbox.settle(event, "failed", None)
            return "failed"
        try:
            destination = self.guard.destination(job.callback.url)
        except CallbackForbidden as exc:
            log.warning("callback %s refused: %s", event.id, exc.message)
            self.outbox.settle(event, "failed", None)
            return "failed"
        except OSError as exc:
            log.info("callback %s: %s does not resolve: %s", event.id, job.callback.url, exc)
            attempt = Attempt(None)
        else:
            attempt = self._post(destination, event, job)
        return self._settle(event, attempt)

    def _secrets(self, tenant_id: str) -> tuple[str, ...]:
        tenant = self.tenants.tenants.get(tenant_id)
        return tenant.webhook_secrets if tenant is not None else ()

    def body(self, event: Event, job: Job) -> bytes:
        # A progress event is about now: the job has no finished_at yet.
        timestamp = job.finished_at or utc_now()
        data = job.public()
        if event.progress:  # the progress the event was queued for, as its id says
            data["progress"] = json.loads(event.progress)
        payload = {"type": event.type, "timestamp": timestamp, "data": data}
        return json.dumps(payload, separators=(",", ":")).encode()

    def _post(self, destination: Destination, event: Event, job: Job) -> Attempt:
        body = self.body(event, job)
        timestamp = int(self.clock())
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": event.id,
            "webhook-timestamp": str(timestamp),
        }
        headers["webhook-signature"] = signature_header(
            self._secrets(job.tenant), event.id, timestamp, body
        )
        default_port = 443 if destination.scheme == "https" else 80
        headers["host"] = (
            destination.host
            if destination.port == default_port
            else f"{_bracketed(destination.host)}:{destination.port}"
        )
        # trust_env=False: a proxy from the environment would connect to the name itself.
        # The timeout bounds each read; the deadline bounds the attempt (callbacks.deadline).
        with (
            AttemptDeadline(self.timeout_s) as deadline,
            httpx.Client(
                timeout=self.timeout_s, follow_redirects=False, trust_env=False, verify=self.verify
            ) as http,
        ):
            for address in destination.addresses:
                if deadline.remaining() <= 0:
                    break
                url = (
                    f"{destination.scheme}://{_bracketed(address)}:{destination.port}"
                    f"{destination.target}"
                )
                try:
                    # Connect to the checked address; Host and SNI carry the name.
                    with http.stream(
                        "POST",
                        url,
                        content=body,
                        headers=headers,
                        timeout=httpx.Timeout(self.timeout_s, connect=deadline.remaining()),
                        extensions={"sni_hostname": destination.host, "trace": deadline.trace},
                    ) as response:
                        _read_capped(response)
                        answer = Attempt(response.status_code, response.headers.get("retry-after"))
                except httpx.ConnectError as exc:
                    log.info("callback %s: %s unreachable: %s", event.id, address, exc)
                    continue
                except httpx.HTTPError as exc:
                    if not deadline.expired:
                        log.info("callback %s: %s", event.id, exc)
                    answer = Attempt(None)
                # Whatever a connection cut at the deadline gave (even a body read to its
                # end), the receiver did not answer in time.
                if not deadline.expired:
                    return answer
                break
        if deadline.expired:
            log.info("callback %s: no answer within %s s", event.id, self.timeout_s)
        return Attempt(None)

    def _settle(self, event: Event, attempt: Attempt) -> CallbackState:
        status = attempt.status
        if status is not None and 200 <= status < 300:
            state: CallbackState = "delivered"
        elif status == 410 or event.attempts + 1 >= len(self.schedule):
            state = "failed"
        elif event.type == PROGRESS_EVENT:
            state = "failed"  # not retried: the next progress event (or the end) supersedes it
        else:
            state = "pending"
        next_due = 0.0
        if state == "pending":
            next_due = self._next_due(event, attempt)
        if not self.outbox.settle(event, state, status, next_due):
            log.warning("callback %s: lease lost before settling; the new holder decides", event.id)
        log.info("callback %s attempt %d: %s (%s)", event.id, event.attempts + 1, state, status)
        return state

    def _next_due(self, event: Event, attempt: Attempt) -> float:
        now = self.clock()
        if attempt.status in RETRY_AFTER_STATUSES:
            wait = retry_after_s(attempt.retry_after, now)
            if wait is not None:
                # Never past the schedule's last attempt (24 h): the event would outlive its key.
                return min(now + wait, event.first_ts + self.schedule[-1])
        offset = self.schedule[event.attempts + 1]
        gap = offset - self.schedule[event.attempts]
        # Jitter within a tenth of the gap spreads a receiver's recovery load.
        jitter = random.uniform(0, gap / 10)  # noqa: S311 - not a secret
        return max(now, event.first_ts + offset + jitter)


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _read_capped(response: httpx.Response) -> bytes:
    """Read at most BODY_CAP_BYTES of the answer: a receiver cannot make us buffer more (nor
    take longer than the attempt's deadline, which bounds the time)."""
    data = b""
    for chunk in response.iter_raw():
        data += chunk
        if len(data) >= BODY_CAP_BYTES:
            break
    return data[:BODY_CAP_BYTES]


class CallbacksWorker:
    """Leases due events and delivers them on a few threads until `stop()`, or, with
    `burst=True`, until nothing is due and nothing is in flight (arq's `Worker(burst=True)`:
    tests drive the delivery's clock and assert once the worker says it is idle)."""

    def __init__(
        self,
        delivery: CallbackDelivery,
        threads: int = 8,
        poll_s: float = 0.2,
        presence: Presence | None = None,
    ) -> None:
        self.delivery = delivery
        self.threads = threads
        self.poll_s = poll_s
        # Beats after each outbox read (`ttsfleet health callbacks`): the loop runs and
        # reaches Redis, whether or not any event is due.
        self.presence = presence
        self._stopping = threading.Event()

    def stop(self, *_: Any) -> None:
        self._stopping.set()

    def run(self, burst: bool = False) -> int:
        """Deliver until stopped (or, in burst mode, idle); returns how many attempts ran."""
        running: set[Future[CallbackState]] = set()
        attempts = 0
        with ThreadPoolExecutor(self.threads, thread_name_prefix="callback") as pool:
            while not self._stopping.is_set():
                running = {f for f in running if not f.done()}
                free = self.threads - len(running)
                events: list[Event] = []
                try:
                    if free > 0:
                        events = self.delivery.outbox.due(free, now=self.delivery.clock())
                    if self.presence is not None:
                        self.presence.beat()
                except Exception:
                    log.exception("cannot read the outbox; retrying")
                for event in events:
                    running.add(pool.submit(self._deliver, event))
                attempts += len(events)
                if burst and not events and not running:
                    break
                if not events:
                    self._stopping.wait(self.poll_s)
        if self.presence is not None:
            self.presence.leave()
        return attempts

    def _deliver(self, event: Event) -> CallbackState:
        try:
            return self.delivery.deliver(event)
        except Exception:
            # The lease runs out and the event is claimed again.
            log.exception("callback %s: delivery crashed", event.id)
            return "pending"


def outbox_lease_s(timeout_s: float) -> float:
    """How long a delivery holds its event: longer than an attempt can take, so a live
    worker never loses the lease mid-attempt and no other worker sends the event meanwhile.
    An attempt ends at its deadline (`timeout_s`); were the deadline's timer late to wake a
    read, that read still ends within its own timeout (`timeout_s` again); 10 s more cover
    name resolution and settling. A fixed lease over a bounded attempt rather than a lease
    renewed while the attempt runs: renewal would let a dripping receiver hold its event
    indefinitely, and would add a second writer per event whose own stalls need a bound."""
    return timeout_s * 2 + 10
