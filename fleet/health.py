"""`ttsfleet health ROLE`: exit 0 when this host's process of ROLE is alive, 1 otherwise.

The one health-check command of every container (compose's `healthcheck`, the images'
HEALTHCHECK) and Kubernetes probe. Each role is asked in its own way, and only about the
process on this host (a container's hostname is its own):
- api, flower: their HTTP endpoint on this host (`/readyz`, Flower's `/healthcheck`);
- worker: its Celery node answers a ping sent to that node by name, not a broadcast to
  all; the name comes from the node's heartbeat (worker.heartbeat), which carries the
  `model-device@host` the worker was started with;
- dispatcher, callbacks: a recent beat of a process on this host in Redis
  (tasks.presence), written from the role's own loop: no Celery node to ping.
"""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

import redis

from tasks import keys, redis_url
from tasks.settings import Settings

ROLES = ("api", "worker", "dispatcher", "callbacks", "flower")


@dataclass(frozen=True)
class Check:
    ok: bool
    message: str


def _http(url: str, timeout_s: float) -> Check:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (http on loopback)
            return Check(True, f"{url}: {response.status}")
    except (urllib.error.URLError, OSError) as exc:
        return Check(False, f"{url}: {exc}")


def _redis(settings: Settings, timeout_s: float) -> redis.Redis:
    return redis_url.client(
        settings.redis_url,
        decode_responses=True,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
    )


def check_api(settings: Settings, port: int | None, timeout_s: float) -> Check:
    return _http(f"http://127.0.0.1:{port or settings.api_port}/readyz", timeout_s)


def check_flower(settings: Settings, port: int | None, timeout_s: float) -> Check:
    # Flower answers /healthcheck without its basic auth.
    return _http(f"http://127.0.0.1:{port or settings.flower_port}/healthcheck", timeout_s)


def worker_nodes(client: redis.Redis, host: str, within_s: float, now: float) -> list[str]:
    """Celery nodes on `host` whose heartbeat is recent (keys.WORKERS)."""
    nodes = [str(n) for n in client.zrangebyscore(keys.WORKERS, now - within_s, "+inf")]
    return [node for node in nodes if node.rpartition("@")[2] == host]


def check_worker(settings: Settings, host: str, timeout_s: float) -> Check:
    from tasks.app import app

    try:
        nodes = worker_nodes(
            _redis(settings, timeout_s), host, 3 * settings.worker_heartbeat_s, time.time()
        )
    except redis.RedisError as exc:
        return Check(False, f"cannot read worker heartbeats: {exc}")
    if not nodes:
        return Check(False, f"no worker on {host} has written its heartbeat")
    replies = app.control.ping(destination=nodes, timeout=timeout_s, limit=len(nodes)) or []
    answered = {node for reply in replies for node in reply}
    missing = sorted(set(nodes) - answered)
    if missing:
        return Check(False, f"no answer to ping within {timeout_s:g} s from {', '.join(missing)}")
    return Check(True, f"{', '.join(sorted(answered))} answered ping")


def check_presence(settings: Settings, role: str, host: str, timeout_s: float) -> Check:
    from tasks.presence import recent

    # Three beats (tasks.presence.Presence beats every 2 s) and a margin for a slow loop.
    within_s = 15.0
    try:
        alive = recent(_redis(settings, timeout_s), role, host, within_s, time.time())
    except redis.RedisError as exc:
        return Check(False, f"cannot read {keys.alive_key(role)}: {exc}")
    if not alive:
        return Check(False, f"no {role} process on {host} beat in the last {within_s:g} s")
    return Check(True, f"{role} alive: {', '.join(alive)}")


def check(
    role: str,
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    timeout_s: float = 5.0,
) -> Check:
    host = host or socket.gethostname()
    checks: dict[str, Callable[[], Check]] = {
        "api": lambda: check_api(settings, port, timeout_s),
        "flower": lambda: check_flower(settings, port, timeout_s),
        "worker": lambda: check_worker(settings, host, timeout_s),
        "dispatcher": lambda: check_presence(settings, "dispatcher", host, timeout_s),
        "callbacks": lambda: check_presence(settings, "callbacks", host, timeout_s),
    }
    if role not in checks:
        raise ValueError(f"role is one of {', '.join(ROLES)}, not {role!r}")
    return checks[role]()
