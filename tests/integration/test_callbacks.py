"""Callbacks on real parts: redis-server, a loopback HTTP receiver, the outbox, the
callbacks worker (in a thread, and as `ttsfleet worker --callbacks` end to end)."""

from __future__ import annotations

import ipaddress
import json
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from callbacks.delivery import CallbackDelivery, CallbacksWorker
from callbacks.outbox import Outbox
from client.webhooks import verify_webhook
from tasks import keys
from tasks.jobs import CallbackInfo, ErrorInfo
from tasks.settings import Settings
from tasks.ssrf import CallbackGuard
from tasks.store import Claim, JobStore
from tasks.tenants import Tenant, TenantDirectory
from tests.conftest import API_KEYS, ROOT, ApiServer, settings_env, wait_until
from tests.helpers.clock import Clock
from tests.helpers.deliveries import (
    LOOPBACK,
    OLD_SECRET,
    SECRET,
    callback_of,
    delivery_for,
    drain,
    finished_job,
    self_signed,
)
from tests.helpers.jobs import AUDIO, make_job
from tests.helpers.receivers import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def cb_settings(make_settings: Callable[..., Settings], tmp_path: Path) -> Settings:
    # Every callback is signed: the test tenants come from a tenants file with secrets (the
    # API_KEYS shorthand gives a tenant none).
    tenants = tmp_path / "tenants.json"
    tenants.write_text(json.dumps({"tenants": [
        {"id": t, "api_keys": [key], "webhook_secret": SECRET} for t, key in API_KEYS.items()
    ]}))  # fmt: skip
    return make_settings(
        api_keys=None,
        tenants_file=tenants,
        callback_allowed_networks=LOOPBACK,
        callback_retry_schedule="0,0.3,0.6,0.9",
        callback_timeout_s=3,
    )


YEAR_S = 365 * 86400.0


def idle_worker(delivery: CallbackDelivery) -> CallbacksWorker:
    """A worker for burst runs (`run(burst=True)` returns once nothing is due or running)."""
    return CallbacksWorker(delivery, threads=4, poll_s=0.02)


@pytest.fixture
def run_worker() -> Iterator[Callable[[CallbackDelivery], CallbacksWorker]]:
    started: list[tuple[CallbacksWorker, threading.Thread]] = []

    def run(delivery: CallbackDelivery) -> CallbacksWorker:
        worker = CallbacksWorker(delivery, threads=4, poll_s=0.02)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        started.append((worker, thread))
        return worker

    yield run
    for worker, thread in started:
        worker.stop()
        thread.join(10)


def test_a_tenant_without_a_secret_gets_no_unsigned_callback(
    store: JobStore, cb_settings: Settings, receiver: Receiver
) -> None:
    """The API refuses such a callback_url (callback_secret_missing); a secret removed from
    the tenants file since the submit still sends nothing unsigned."""
    job = finished_job(store, receiver.url)
    unsigned = TenantDirectory([Tenant(id="acme", api_keys=("k",))])
    idle_worker(delivery_for(cb_settings, store, tenants=unsigned)).run(burst=True)
    assert callback_of(store, job.id).state == "failed"
    assert receiver.received == []
    assert Outbox(store.redis, 10).pending() == {}


def test_signed_job_succeeded_is_delivered_once(
    store: JobStore, cb_settings: Settings, receiver: Receiver, run_worker: Any
) -> None:
    job = finished_job(store, receiver.url)
    run_worker(delivery_for(cb_settings, store))
    wait_until(lambda: callback_of(store, job.id).state == "delivered", timeout=10)
    assert len(receiver.received) == 1
    got = receiver.received[0]
    verify_webhook(SECRET, got.headers, got.body)
    event = json.loads(got.body)
    assert event["type"] == "job.succeeded" and event["data"]["id"] == job.id
    assert event["data"]["status"] == "succeeded" and event["timestamp"]
    assert got.headers["webhook-id"] == keys.callback_event_id(job.id, "succeeded")
    assert callback_of(store, job.id) == CallbackInfo(
        url=receiver.url, state="delivered", attempts=1, last_status=200
    )
    assert Outbox(store.redis, 10).pending() == {}


def test_rotation_signs_with_both_secrets(
    store: JobStore, cb_settings: Settings, receiver: Receiver, run_worker: Any
) -> None:
    rotating = TenantDirectory(
        [Tenant(id="acme", api_keys=("k",), webhook_secrets=(SECRET, OLD_SECRET))]
    )
    job = finished_job(store, receiver.url)
    run_worker(delivery_for(cb_settings, store, tenants=rotating))
    wait_until(lambda: callback_of(store, job.id).state == "delivered", timeout=10)
    got = receiver.received[0]
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    verify_webhook(SECRET, got.headers, got.body)
    verify_webhook(OLD_SECRET, got.headers, got.body)


def test_500s_are_retried_on_schedule_with_the_same_webhook_id(
    store: JobStore, cb_settings: Settings, receiver: Receiver
) -> None:
    receiver.script = [(500, {}), (503, {})]
    job = finished_job(store, receiver.url)
    start = time.time()
    clock = Clock(start)
    worker = idle_worker(delivery_for(cb_settings, store, clock=clock))
    outbox = worker.delivery.outbox
    assert worker.run(burst=True) == 1
    offsets = []
    for _ in range(2):
        [due] = outbox.pending().values()
        offsets.append(due - start)
        clock.now = due - 0.001
        assert worker.run(burst=True) == 0  # not before its time
        clock.now = due
        assert worker.run(burst=True) == 1
    assert outbox.pending() == {}
    # Offsets 0.3 and 0.6 s from the first attempt, plus at most a tenth of the gap of jitter.
    assert 0.3 <= offsets[0] <= 0.33 and 0.6 <= offsets[1] <= 0.63
    ids = {r.headers["webhook-id"] for r in receiver.received}
    assert len(receiver.received) == 3 and ids == {keys.callback_event_id(job.id, "succeeded")}
    for r in receiver.received:
        verify_webhook(SECRET, r.headers, r.body)
    assert callback_of(store, job.id) == CallbackInfo(
        url=receiver.url, state="delivered", attempts=3, last_status=200
    )


def test_receiver_outage_then_recovery(
    store: JobStore, cb_settings: Settings, run_worker: Any
) -> None:
    down = Receiver()  # nothing listens on its port yet
    job = finished_job(store, down.url)
    run_worker(delivery_for(cb_settings, store))
    wait_until(lambda: callback_of(store, job.id).attempts >= 2, timeout=10)
    assert callback_of(store, job.id).state == "pending"
    assert callback_of(store, job.id).last_status is None
    down.start()
    try:
        wait_until(lambda: callback_of(store, job.id).state == "delivered", timeout=10)
        assert [r.headers["webhook-id"] for r in down.received] == [
            keys.callback_event_id(job.id, "succeeded")
        ]
    finally:
        down.stop()


def test_all_attempts_failing_ends_failed(
    store: JobStore, cb_settings: Settings, receiver: Receiver, run_worker: Any
) -> None:
    receiver.script = [(500, {})] * 10
    job = finished_job(store, receiver.url)
    clock = Clock(time.time())
    worker = idle_worker(delivery_for(cb_settings, store, clock=clock))
    # Burst runs on a hand-moved clock: each retry comes when the clock reaches it.
    assert drain(worker, clock) == 4  # one per schedule entry
    assert callback_of(store, job.id).state == "failed"
    clock.advance(YEAR_S)  # long past the schedule: nothing is left to send
    assert worker.run(burst=True) == 0
    assert len(receiver.received) == 4
    assert callback_of(store, job.id).last_status == 500


def test_410_stops_retries(
    store: JobStore, cb_settings: Settings, receiver: Receiver, run_worker: Any
) -> None:
    receiver.script = [(410, {})]
    job = finished_job(store, receiver.url)
    clock = Clock(time.time())
    worker = idle_worker(delivery_for(cb_settings, store, clock=clock))
    assert worker.run(burst=True) == 1
    clock.advance(YEAR_S)  # every later schedule entry has come due: none is sent
    assert worker.run(burst=True) == 0
    assert len(receiver.received) == 1
    assert callback_of(store, job.id) == CallbackInfo(
        url=receiver.url, state="failed", attempts=1, last_status=410
    )
    assert Outbox(store.redis, 10).pending() == {}


@pytest.mark.parametrize("status", [429, 502, 504])
def test_retry_after_is_honoured(
    store: JobStore, cb_settings: Settings, receiver: Receiver, run_worker: Any, status: int
) -> None:
    receiver.script = [(status, {"Retry-After": "1"})]
    job = finished_job(store, receiver.url)
    # A schedule that runs past the Retry-After (a wait is capped at the last offset).
    longer = cb_settings.model_copy(update={"callback_retry_schedule": "0,0.3,0.6,5"})
    run_worker(delivery_for(longer, store))
    wait_until(lambda: callback_of(store, job.id).state == "delivered", timeout=10)
    gap = receiver.received[1].at - receiver.received[0].at
    assert 0.95 <= gap <= 2.0, gap  # the schedule alone would have retried after 0.3 s


def test_retry_after_past_the_schedule_is_capped_at_its_last_attempt(
    store: JobStore, cb_settings: Settings, receiver: Receiver, run_worker: Any
) -> None:
    receiver.script = [(503, {}), (429, {"Retry-After": "31536000"})]
    job = finished_job(store, receiver.url)
    run_worker(delivery_for(cb_settings, store))
    # A year's Retry-After would outlive the event; the last scheduled attempt (0.9 s) comes.
    wait_until(lambda: callback_of(store, job.id).state == "delivered", timeout=10)
    gap = receiver.received[2].at - receiver.received[0].at
    assert gap <= 2.0, gap


def test_redirects_are_not_followed(
    store: JobStore, cb_settings: Settings, receiver: Receiver, run_worker: Any
) -> None:
    receiver.script = [(307, {"Location": "http://169.254.169.254/"})] * 10
    job = finished_job(store, receiver.url)
    run_worker(delivery_for(cb_settings, store))
    wait_until(lambda: callback_of(store, job.id).state == "failed", timeout=10)
    assert callback_of(store, job.id).last_status == 307 and len(receiver.received) == 4


def test_a_huge_answer_is_read_only_to_the_cap(
    store: JobStore, cb_settings: Settings, receiver: Receiver, run_worker: Any
) -> None:
    receiver.answer_bytes = 64 * 1024 * 1024
    job = finished_job(store, receiver.url)
    run_worker(delivery_for(cb_settings, store))
    wait_until(lambda: callback_of(store, job.id).state == "delivered", timeout=10)
    wait_until(lambda: receiver.answered == 1, timeout=10)  # its handler has finished
    assert receiver.answers_sent == 0  # the 64 MiB answer was cut off, not buffered


@pytest.mark.parametrize(
    "url",
    ["{loopback}", "http://10.0.0.7/hook", "http://169.254.169.254/latest", "http://[::1]:{port}/"],
)
def test_delivery_refuses_private_destinations_unless_allowed(
    store: JobStore,
    make_settings: Callable[..., Settings],
    receiver: Receiver,
    run_worker: Any,
    url: str,
) -> None:
    strict = make_settings(callback_retry_schedule="0,0.1")  # no allowed networks
    job = finished_job(store, url.format(loopback=receiver.url, port=receiver.port))
    run_worker(delivery_for(strict, store))
    wait_until(lambda: callback_of(store, job.id).state == "failed", timeout=10)
    assert receiver.received == []
    assert callback_of(store, job.id).attempts == 1  # refused for good, not retried


def test_delivery_connects_to_the_checked_address_with_the_name_as_host(
    store: JobStore, cb_settings: Settings, receiver: Receiver, run_worker: Any
) -> None:
    """The name resolves once, to a checked address; the system resolver (which does not
    know this name) is never asked again, and the receiver still sees the name."""
    lookups: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]

    guard = CallbackGuard([ipaddress.ip_network("127.0.0.0/8")], resolver=resolve)
    job = finished_job(store, f"http://hooks.invalid:{receiver.port}/hook")
    run_worker(delivery_for(cb_settings, store, guard=guard))
    wait_until(lambda: callback_of(store, job.id).state == "delivered", timeout=10)
    assert lookups == ["hooks.invalid"]
    assert receiver.received[0].headers["host"] == f"hooks.invalid:{receiver.port}"


def test_https_connects_to_the_checked_address_with_the_name_in_sni_and_certificate(
    store: JobStore, cb_settings: Settings, run_worker: Any, tmp_path: Path
) -> None:
    pem = self_signed(tmp_path, "hooks.invalid")
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(pem)
    sni: list[str | None] = []
    server_side.sni_callback = lambda sock, name, ctx: sni.append(name)  # type: ignore[assignment,func-returns-value]
    receiver = Receiver(tls=server_side).start()
    try:
        guard = CallbackGuard(
            [ipaddress.ip_network("127.0.0.0/8")], resolver=lambda host, port: ["127.0.0.1"]
        )
        delivery = delivery_for(cb_settings, store, guard=guard)
        delivery.verify = ssl.create_default_context(cafile=str(pem))
        job = finished_job(store, f"https://hooks.invalid:{receiver.port}/hook")
        run_worker(delivery)
        wait_until(lambda: callback_of(store, job.id).state == "delivered", timeout=10)
        assert sni == ["hooks.invalid"]
        assert receiver.received[0].headers["host"] == f"hooks.invalid:{receiver.port}"
        verify_webhook(SECRET, receiver.received[0].headers, receiver.received[0].body)
    finally:
        receiver.stop()


def test_delivery_rechecks_a_name_that_now_resolves_privately(
    store: JobStore, cb_settings: Settings, receiver: Receiver, run_worker: Any
) -> None:
    guard = CallbackGuard(resolver=lambda host, port: ["127.0.0.1"])  # rebound to loopback
    job = finished_job(store, f"http://rebind.invalid:{receiver.port}/hook")
    run_worker(delivery_for(cb_settings, store, guard=guard))
    wait_until(lambda: callback_of(store, job.id).state == "failed", timeout=10)
    assert receiver.received == []


def test_one_terminal_event_even_when_the_job_ends_twice(
    store: JobStore, redis_client: redis.Redis
) -> None:
    job = make_job(callback=CallbackInfo(url="https://hooks.example/x"))
    store.create(job)
    assert store.claim(job.id, 3).verdict is Claim.RUN
    assert store.succeed(job.id, AUDIO).applied
    assert not store.succeed(job.id, AUDIO).applied
    assert not store.fail(job.id, ErrorInfo(code="engine_error", message="late")).applied
    assert not store.cancel(job.id).applied
    # Even a terminal write that slips past the status check (a replayed script) adds none.
    store.transition(job.id, ("succeeded",), store.get(job.id).status)  # type: ignore[union-attr]
    assert list(Outbox(store.redis, 10).pending()) == [keys.callback_event_id(job.id, "succeeded")]
    plain = make_job()
    store.create(plain)
    store.cancel(plain.id)
    assert len(Outbox(store.redis, 10).pending()) == 1  # no callback, no event


def test_worker_lost_and_deadline_failures_emit_job_failed(store: JobStore) -> None:
    lost = make_job(callback=CallbackInfo(url="https://hooks.example/x"))
    store.create(lost)
    assert store.claim(lost.id, 1).verdict is Claim.RUN
    assert store.claim(lost.id, 1).verdict is Claim.EXHAUSTED
    late = make_job(callback=CallbackInfo(url="https://hooks.example/x"), deadline_s=1)
    store.create(late, now=time.time() - 5)
    assert store.claim(late.id, 3).verdict is Claim.EXPIRED
    assert store.claim(late.id, 3).verdict is Claim.TERMINAL
    pending = Outbox(store.redis, 10).pending()
    assert set(pending) == {
        keys.callback_event_id(lost.id, "failed"),
        keys.callback_event_id(late.id, "failed"),
    }
    events = Outbox(store.redis, 10).due(10)
    assert {e.type for e in events} == {"job.failed"}


def test_a_lease_keeps_others_out_and_returns_after_a_crash(store: JobStore) -> None:
    job = make_job(callback=CallbackInfo(url="https://hooks.example/x"))
    store.create(job)
    store.cancel(job.id)
    crashed, other = Outbox(store.redis, lease_s=0.5), Outbox(store.redis, lease_s=10)
    now = time.time()  # the outboxes' clock, moved by hand below
    [event] = crashed.due(10, now=now)
    assert event.type == "job.canceled" and event.attempts == 0
    assert other.due(10, now=now + 0.4) == []  # leased: nobody else delivers this attempt
    [again] = other.due(10, now=now + 0.6)  # the crashed worker's lease ran out
    assert again.id == event.id and again.first_ts == event.first_ts
    assert not crashed.settle(event, "delivered", 200)  # its lease is gone: no write
    assert other.settle(again, "delivered", 204)
    assert callback_of(store, job.id).state == "delivered"
    assert callback_of(store, job.id).last_status == 204


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/h",
        "http://localhost:9/h",
        "http://[::1]/h",
        "http://[::ffff:127.0.0.1]/h",
        "http://2130706433/h",
        "http://0x7f000001/h",
        "http://127.1/h",
        "http://0.0.0.0/h",
        "http://10.0.0.1/h",
        "http://169.254.169.254/latest/meta-data",
        "http://[fd00:ec2::254]/h",
    ],
)
def test_submit_refuses_private_callback_urls(
    start_api: Callable[..., ApiServer],
    settings: Settings,
    redis_client: redis.Redis,
    url: str,
) -> None:
    api = start_api(settings)
    with api.client() as http:
        response = http.post("/v1/jobs", json={"text": "hi", "callback_url": url})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "callback_url_forbidden"
    assert redis_client.keys(keys.job_key("*")) == []


def test_submit_accepts_allowed_networks_and_cancel_emits_job_canceled(
    start_api: Callable[..., ApiServer],
    cb_settings: Settings,
    store: JobStore,
    receiver: Receiver,
    run_worker: Any,
) -> None:
    api = start_api(cb_settings)
    with api.client() as http:
        job = http.post("/v1/jobs", json={"text": "hi", "callback_url": receiver.url}).json()
        assert job["callback"] == {
            "url": receiver.url, "state": "pending", "attempts": 0, "last_status": None,
        }  # fmt: skip
        assert http.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
        acme = TenantDirectory.from_settings(cb_settings)
        run_worker(delivery_for(cb_settings, store, tenants=acme))
        wait_until(
            lambda: http.get(f"/v1/jobs/{job['id']}").json()["callback"]["state"] == "delivered"
        )
    got = receiver.received[0]
    assert json.loads(got.body)["type"] == "job.canceled"
    verify_webhook(acme.tenants["acme"].webhook_secrets[0], got.headers, got.body)


def test_end_to_end_submit_synthesize_deliver(
    start_api: Callable[..., ApiServer],
    cb_settings: Settings,
    redis_client: redis.Redis,
    receiver: Receiver,
    start_worker: Callable[..., Any],
    tmp_path: Path,
) -> None:
    api = start_api(cb_settings)
    start_worker(cb_settings)
    env = {
        **settings_env(cb_settings),
        "TTSFLEET_CALLBACK_ALLOWED_NETWORKS": LOOPBACK,
        "TTSFLEET_CALLBACK_RETRY_SCHEDULE": cb_settings.callback_retry_schedule,
    }
    log = tmp_path / "callbacks.log"
    with open(log, "wb") as out:
        callbacks = subprocess.Popen(
            [sys.executable, "-m", "fleet", "callbacks"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_until(lambda: "callbacks worker ready." in log.read_text(), timeout=30)
        with api.client() as http:
            job = http.post(
                "/v1/jobs",
                json={"text": "Your callback is on its way.", "callback_url": receiver.url},
            ).json()

            def delivered() -> dict[str, Any] | None:
                current: dict[str, Any] = http.get(f"/v1/jobs/{job['id']}").json()
                return current if (current["callback"] or {}).get("state") == "delivered" else None

            done = wait_until(delivered, timeout=60, interval=0.1)
        assert done["status"] == "succeeded"
        assert done["callback"]["attempts"] == 1 and done["callback"]["last_status"] == 200
        [got] = receiver.received
        secret = TenantDirectory.from_settings(cb_settings).tenants["acme"].webhook_secrets[0]
        verify_webhook(secret, got.headers, got.body)
        event = json.loads(got.body)
        assert event["type"] == "job.succeeded"
        assert event["data"]["audio"]["url"] == f"/v1/jobs/{job['id']}/audio"
        assert httpx.get(f"{api.url}/v1/jobs/{job['id']}/audio").status_code == 401
    finally:
        callbacks.terminate()
        assert callbacks.wait(20) == 0, log.read_text()[-2000:]
