"""Redis connections from `TTSFLEET_REDIS_URL`: redis://, rediss:// and unix:// as redis-py
reads them, and sentinel:// for a master that Redis Sentinel names (DESIGN §2), so every
process finds the master again after a failover:

    sentinel://[:PASSWORD@]HOST[:PORT][,HOST[:PORT]...][/DB]?master=NAME[&sentinel_password=P]

PASSWORD is the master's (and its replicas'); the sentinels are asked with
`sentinel_password` where they have one of their own. The port defaults to 26379. redis-py's
Sentinel clients ask the sentinels for the master on every new connection and drop
connections to a master that was demoted; kombu's Redis transport has the same for Celery
(`broker`), and Flower reads it from the Celery app. The API's asyncio pools are made in
api.pool from `sentinel_target` too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, parse_qsl, quote, unquote, urlencode, urlsplit

import redis
from redis.sentinel import Sentinel

SENTINEL_PORT = 26379


@dataclass(frozen=True)
class SentinelTarget:
    """Where the sentinels are and which master of theirs is the fleet's Redis."""

    sentinels: list[tuple[str, int]]
    master: str
    db: int = 0
    password: str | None = None
    sentinel_password: str | None = None

    def sentinel_kwargs(self, connection: dict[str, Any] | None = None) -> dict[str, Any]:
        """How to connect to the sentinels themselves: the master connection's timeouts,
        and their own password."""
        waits = ("socket_timeout", "socket_connect_timeout")
        kwargs = {k: v for k, v in (connection or {}).items() if k in waits}
        if self.sentinel_password is not None:
            kwargs["password"] = self.sentinel_password
        return kwargs


def sentinel_target(url: str) -> SentinelTarget | None:
    """The sentinel:// URL's parts, or None for any other URL. A sentinel:// URL without
    hosts or `master` is a ValueError, as redis-py's is for a URL it cannot read."""
    parts = urlsplit(url)
    if parts.scheme != "sentinel":
        return None
    netloc = parts.netloc.rpartition("@")[2]
    sentinels = [_address(host) for host in netloc.split(",") if host]
    query = parse_qs(parts.query)
    master = query.get("master", [""])[0]
    if not sentinels or not master:
        raise ValueError(
            "a sentinel:// URL names its sentinels and master: "
            "sentinel://[:PASSWORD@]HOST[:PORT][,HOST[:PORT]...][/DB]?master=NAME"
        )
    path = parts.path.strip("/")
    password = parts.password if "@" in parts.netloc else None
    return SentinelTarget(
        sentinels=sentinels,
        master=master,
        db=int(path) if path else 0,
        password=unquote(password) if password is not None else None,
        sentinel_password=query.get("sentinel_password", [None])[0],
    )


def redacted(url: str) -> str:
    """The URL as messages and logs show it: its password and a `sentinel_password` as ***."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, hosts = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:***@{hosts}" if ":" in user else netloc
    query = [(k, "***" if k == "sentinel_password" else v) for k, v in parse_qsl(parts.query)]
    return parts._replace(netloc=netloc, query=urlencode(query, safe="*")).geturl()


def _address(text: str) -> tuple[str, int]:
    """`host`, `host:port` or `[v6 address]:port`."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = text.partition(":")
    return host, int(port) if port else SENTINEL_PORT


def client(url: str, **kwargs: Any) -> redis.Redis:
    """A client of the fleet's Redis (its master, under Sentinel); `kwargs` as redis-py's."""
    target = sentinel_target(url)
    if target is None:
        return redis.Redis.from_url(url, **kwargs)
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        target.sentinels, sentinel_kwargs=target.sentinel_kwargs(kwargs),
        password=target.password, db=target.db, **kwargs,
    )  # fmt: skip
    master: redis.Redis = sentinel.master_for(target.master)  # type: ignore[no-untyped-call]
    return master


def broker(url: str) -> tuple[str, dict[str, Any]]:
    """Celery's broker URL and the transport options it needs besides the fleet's own: kombu
    takes sentinels as `sentinel://...;sentinel://...` and the master's name as an option."""
    target = sentinel_target(url)
    if target is None:
        return url, {}
    auth = f":{quote(target.password, safe='')}@" if target.password is not None else ""
    urls = ";".join(
        f"sentinel://{auth}{host if ':' not in host else f'[{host}]'}:{port}/{target.db}"
        for host, port in target.sentinels
    )
    options: dict[str, Any] = {"master_name": target.master}
    if target.sentinel_password is not None:
        options["sentinel_kwargs"] = target.sentinel_kwargs()
    return urls, options
