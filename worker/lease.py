"""Job leases: the worker process keeps a short-TTL key per job whose message it holds.

The holder is the worker's main process (the Celery consumer), not the process that runs
the engine: it knows every message it holds, received or running (`celery.worker.state`),
whatever the pool, and a prefork child inherits its `HOLDER` so that the child's claim
(tasks.store) takes the lease in the same name. A killed child's job, requeued at once by
`task_reject_on_worker_lost`, is therefore claimed again by its own worker; a killed main
process stops renewing, its leases lapse within `job_lease_s`, and the reconciler
(tasks.reconciler) sends its jobs again.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable, Iterable

import redis

from tasks import keys

log = logging.getLogger(__name__)

# Made once in the worker's main process at import; prefork children inherit it.
HOLDER = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"

# KEYS: job leases. ARGV: holder, milliseconds. Renew ours, take free ones, never steal.
_RENEW = """
local n = 0
for _, key in ipairs(KEYS) do
  local holder = redis.call('GET', key)
  if not holder or holder == ARGV[1] then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
    n = n + 1
  end
end
return n
"""

# KEYS: job leases. ARGV: holder. Delete the ones that are still ours.
_RELEASE = """
local n = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then n = n + redis.call('DEL', key) end
end
return n
"""


def held_by_this_worker() -> set[str]:
    """Ids of the jobs whose messages this worker holds: prefetched, waiting or running."""
    from celery.worker import state

    # The consumer thread changes these weak sets while we read them; retry on a clash.
    for _ in range(5):
        try:
            return {r.id for r in list(state.reserved_requests) + list(state.active_requests)}
        except RuntimeError:
            continue
    return set()


class LeaseKeeper:
    """Renews the leases of the jobs `held()` returns, every third of the lease."""

    def __init__(
        self,
        client: redis.Redis,
        holder: str,
        lease_s: float,
        held: Callable[[], Iterable[str]] = held_by_this_worker,
    ) -> None:
        self._redis = client
        self.holder = holder
        self.lease_s = lease_s
        self._held = held
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._renewed: list[str] = []

    def renew_once(self) -> int:
        ids = sorted(self._held())
        if not ids:
            return 0
        self._renewed = ids
        leases = [keys.job_lease_key(job_id) for job_id in ids]
        return int(self._renew(keys=leases, args=[self.holder, int(self.lease_s * 1000)]))

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.renew_once()
            except redis.RedisError as exc:
                log.warning("cannot renew job leases: %s", exc)
            self._stop.wait(self.lease_s / 3)

    def start(self) -> None:
        """Renew in a daemon thread until `stop`."""
        self._thread = threading.Thread(target=self.run, name="job-leases", daemon=True)
        self._thread.start()

    def stop(self) -> int:
        """Once no job runs here any more (a finished warm shutdown): stop renewing and free
        the leases of what this worker had prefetched and handed back, so that the next
        worker may claim those jobs at once. Returns how many were freed."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if not self._renewed:
            return 0
        leases = [keys.job_lease_key(job_id) for job_id in self._renewed]
        try:
            return int(self._release(keys=leases, args=[self.holder]))
        except redis.RedisError:
            return 0  # they lapse by themselves
