"""A callback attempt has one deadline for connect, headers and body: a receiver that
drips its answer a byte at a time cannot hold the attempt (and so the outbox lease) open.
Real parts: redis-server, the outbox, and a raw loopback socket receiver."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tasks import keys
from tasks.jobs import CallbackInfo
from tasks.settings import Settings
from tasks.ssrf import CallbackGuard
from tasks.store import JobStore
from tests.helpers.deliveries import (
    LOOPBACK,
    callback_of,
    delivery_for,
    finished_job,
    self_signed,
)

DRIP_GAP_S = 0.2  # well under the per-read timeout: only a total deadline can stop the drip


class DrippingReceiver:
    """Reads one request per connection, sends `prompt` at once, then `drip` one byte every
    DRIP_GAP_S: every single read of the worker is quick, the whole answer is slow."""

    def __init__(self, prompt: bytes, drip: bytes, tls: ssl.SSLContext | None = None) -> None:
        self.prompt = prompt
        self.tls = tls
        self.drip = drip
        self.requests = 0
        self._stopping = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.1)
        self.port = self._server.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(10)
        self._server.close()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            try:
                with self.tls.wrap_socket(conn, server_side=True) if self.tls else conn as c:
                    self._answer(c)
            except OSError:
                pass  # the worker hung up: what a deadline does

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        request = b""
        while b"\r\n\r\n" not in request:
            request += conn.recv(65536)
        head, _, body = request.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(body) < length:
            body += conn.recv(65536)
        self.requests += 1
        conn.sendall(self.prompt)
        for byte in self.drip:
            if self._stopping.wait(DRIP_GAP_S):
                return
            conn.sendall(bytes([byte]))


ANSWER = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
SLOW_BODY = (b"HTTP/1.1 200 OK\r\ncontent-length: 20\r\n\r\n", b"x" * 20)  # 4 s of body
SLOW_HEAD = (b"", ANSWER)  # 8 s of status line and headers


@pytest.fixture
def dripping() -> Iterator[Callable[..., DrippingReceiver]]:
    started: list[DrippingReceiver] = []

    def start(prompt: bytes, drip: bytes, tls: ssl.SSLContext | None = None) -> DrippingReceiver:
        started.append(DrippingReceiver(prompt, drip, tls))
        return started[-1]

    yield start
    for receiver in started:
        receiver.stop()


@pytest.mark.parametrize("answer", [SLOW_BODY, SLOW_HEAD], ids=["body", "status-and-headers"])
def test_a_dripping_answer_ends_the_attempt_at_its_deadline_and_is_retried(
    store: JobStore,
    make_settings: Callable[..., Settings],
    dripping: Callable[..., DrippingReceiver],
    answer: tuple[bytes, bytes],
) -> None:
    settings = make_settings(
        callback_allowed_networks=LOOPBACK, callback_retry_schedule="0,60", callback_timeout_s=1
    )
    receiver = dripping(*answer)
    delivery = delivery_for(settings, store)
    job = finished_job(store, receiver.url)
    [event] = delivery.outbox.due(1)
    started = time.monotonic()
    state = delivery.deliver(event)
    elapsed = time.monotonic() - started
    assert receiver.requests == 1
    # The whole answer takes 4 s or more; generous slack over the 1 s deadline.
    assert elapsed < 2.5, elapsed
    assert state == "pending"
    assert callback_of(store, job.id) == CallbackInfo(
        url=receiver.url, state="pending", attempts=1, last_status=None
    )
    due = delivery.outbox.pending()[keys.callback_event_id(job.id, "succeeded")]
    assert due >= event.first_ts + 60  # the schedule's next attempt, not a duplicate now


def test_a_prompt_answer_is_delivered_within_the_deadline(
    store: JobStore,
    make_settings: Callable[..., Settings],
    dripping: Callable[..., DrippingReceiver],
) -> None:
    settings = make_settings(callback_allowed_networks=LOOPBACK, callback_timeout_s=1)
    receiver = dripping(ANSWER, b"")
    delivery = delivery_for(settings, store)
    job = finished_job(store, receiver.url)
    [event] = delivery.outbox.due(1)
    assert delivery.deliver(event) == "delivered"
    assert callback_of(store, job.id).last_status == 200


def test_a_dripping_https_answer_ends_at_the_deadline_too(
    store: JobStore,
    make_settings: Callable[..., Settings],
    dripping: Callable[..., DrippingReceiver],
    tmp_path: Path,
) -> None:
    """TLS wraps the connection's socket in another object; the deadline still cuts it."""
    pem = self_signed(tmp_path, "hooks.invalid")
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(pem)
    receiver = dripping(*SLOW_BODY, tls=server_side)
    settings = make_settings(callback_retry_schedule="0,60", callback_timeout_s=1)
    guard = CallbackGuard(
        [ipaddress.ip_network("127.0.0.0/8")], resolver=lambda host, port: ["127.0.0.1"]
    )
    delivery = delivery_for(settings, store, guard=guard)
    delivery.verify = ssl.create_default_context(cafile=str(pem))
    job = finished_job(store, f"https://hooks.invalid:{receiver.port}/hook")
    [event] = delivery.outbox.due(1)
    started = time.monotonic()
    assert delivery.deliver(event) == "pending"
    assert time.monotonic() - started < 2.5
    assert receiver.requests == 1
    assert callback_of(store, job.id).last_status is None
