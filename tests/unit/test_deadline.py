"""callbacks.deadline on real loopback TCP sockets: a deadline wakes a read blocked in another
thread at once, and leaves alone an attempt that ended in time."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

from callbacks.deadline import AttemptDeadline
from tests.conftest import wait_until

CONNECTED = "connection.connect_tcp.complete"  # the httpcore trace event the deadline reads


class Stream:
    """What httpcore's trace hands over for a new connection: its socket, on request."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def get_extra_info(self, info: str) -> object:
        return self._sock if info == "socket" else None


@contextmanager
def connection() -> Iterator[tuple[socket.socket, socket.socket]]:
    """Our end and the peer's end of one loopback TCP connection."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        ours = socket.create_connection(server.getsockname())
        theirs, _ = server.accept()
    with ours, theirs:
        ours.settimeout(30)  # a per-read timeout far past every deadline here
        yield ours, theirs


def test_the_deadline_wakes_a_read_blocked_past_it() -> None:
    with connection() as (ours, _):
        started = time.monotonic()
        with AttemptDeadline(0.2) as deadline:
            deadline.trace(CONNECTED, {"return_value": Stream(ours)})
            assert ours.recv(1) == b""  # the end of the stream, not a 30 s wait
        assert deadline.expired
        assert time.monotonic() - started < 10


def test_a_connection_made_after_the_deadline_is_cut_at_once() -> None:
    with connection() as (ours, _), AttemptDeadline(0.05) as deadline:
        wait_until(lambda: deadline.expired, timeout=5)
        deadline.trace(CONNECTED, {"return_value": Stream(ours)})
        assert ours.recv(1) == b""


def test_an_attempt_that_ends_in_time_keeps_its_connection() -> None:
    with connection() as (ours, theirs):
        with AttemptDeadline(0.1) as deadline:
            deadline.trace(CONNECTED, {"return_value": Stream(ours)})
        deadline.join(10)  # the timer, cancelled with the attempt, has ended unfired
        theirs.sendall(b"x")
        assert ours.recv(1) == b"x" and not deadline.expired
