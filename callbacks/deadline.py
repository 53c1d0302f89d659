"""A hard deadline for one outgoing HTTP attempt, whatever the other end does.

httpx's timeouts bound each socket operation, not the request: a receiver that sends a
byte every few seconds keeps a POST alive for as long as it likes. So each attempt gets an
`AttemptDeadline`: a timer that, when time is up, shuts the attempt's connections down.
`shutdown(SHUT_RDWR)` wakes a read blocked in the delivering thread at once (it sees the
end of the stream), where closing the socket from another thread does not on Linux: the
read would wait out its own per-read timeout. The timer shuts down
a duplicate of each socket's descriptor, never httpx's own, so it cannot touch a
descriptor that httpx has closed and the kernel has handed to another connection. The
sockets come from httpcore's documented `trace` extension (`connect_tcp` returns the
stream, whose `socket` is the connection's).
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any


class AttemptDeadline:
    """Use as `with AttemptDeadline(s) as d:` around one attempt, passing
    `extensions={"trace": d.trace}` to each request it makes."""

    def __init__(self, seconds: float) -> None:
        self._ends = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._expired = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> AttemptDeadline:
        self._timer.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._timer.cancel()
        with self._lock:  # the timer, if it is firing now, is done with the duplicates
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()

    @property
    def expired(self) -> bool:
        with self._lock:
            return self._expired

    def join(self, timeout: float | None = None) -> None:
        """Wait until the timer has fired or, cancelled, ended: after this, `expired` is
        final (tests assert on it instead of sleeping past the deadline)."""
        self._timer.join(timeout)

    def remaining(self) -> float:
        """Seconds left; what a connect may still take."""
        return max(0.0, self._ends - time.monotonic())

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's `trace` callback: keep a handle on every connection the attempt opens."""
        if event != "connection.connect_tcp.complete":
            return
        sock = info["return_value"].get_extra_info("socket")
        if not isinstance(sock, socket.socket):
            return
        handle = sock.dup()
        with self._lock:
            self._sockets.append(handle)
            if self._expired:  # connected just as time ran out
                _shut(handle)

    def _expire(self) -> None:
        with self._lock:
            self._expired = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # the peer is already gone
