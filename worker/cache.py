"""The result cache: identical requests reuse stored audio without touching the engine.

Identity is the text, voice, speed, format, sample rate and model version, within a
namespace: each tenant's own by default, so a hit never tells one tenant (by its speed, or by
an `audio.sha256` it has seen) what another synthesized, such as a one-time code read out.
Tenants that set `"share_result_cache": true` in the tenants file share one namespace among
themselves: their identical requests are synthesized once, at the price of that disclosure
between them. The cache holds where the audio already is (its first job's object) and its
description; a hit copies that object under the new job's own deterministic key. A lease
(SET NX with a TTL) makes concurrent identical requests on different workers synthesize
once: the others wait for the entry, and synthesize themselves only if the leaseholder dies.
A book (tasks.units) is made by many workers over minutes, so an identical book does not
wait on a worker: it follows the one being made (`lead`) and is sent again once that ended.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import cast

import redis

from tasks import keys, scripts
from tasks.jobs import AudioInfo, Job

# worker/lua/cache_forget.lua: drop an entry only if it still points at the object.
_FORGET = scripts.load("worker", "cache_forget")
# worker/lua/book_lead.lua: a book leads its request, or follows the book that does.
_LEAD = scripts.load("worker", "book_lead")


@dataclass(frozen=True)
class CachedAudio:
    storage_key: str
    audio: AudioInfo


SHARED_NAMESPACE = "shared"


def namespace(tenant: str, sharing: frozenset[str]) -> str:
    """Where `tenant`'s entries live: `shared` if it opted in, else its own `t.<tenant>`."""
    return SHARED_NAMESPACE if tenant in sharing else f"t.{tenant}"


def request_digest(job: Job, model_version: str, sharing: frozenset[str] = frozenset()) -> str:
    """`<namespace>:<sha256 of the request's identity>` (keys.CACHE)."""
    identity = [job.text, job.voice, job.speed, job.format.value, job.sample_rate, model_version]
    if job.loudness_lufs is not None:  # appended only when set: older entries keep their digest
        identity.append(job.loudness_lufs)
    digest = hashlib.sha256(json.dumps(identity).encode()).hexdigest()
    return f"{namespace(job.tenant, sharing)}:{digest}"


class ResultCache:
    """`sharing`: the tenants that set `share_result_cache` (TenantDirectory)."""

    def __init__(
        self,
        client: redis.Redis,
        ttl_s: int,
        lease_s: float = 120.0,
        sharing: frozenset[str] = frozenset(),
    ) -> None:
        self.sharing = sharing
        self._redis = client
        self._ttl_s = ttl_s
        self._lease_ms = int(lease_s * 1000)
        self._forget = client.register_script(_FORGET)
        self._lead = client.register_script(_LEAD)

    def lookup(self, digest: str) -> CachedAudio | None:
        raw = cast(dict[str, str], self._redis.hgetall(keys.cache_key(digest)))
        if not raw:
            return None
        return CachedAudio(raw["storage_key"], AudioInfo.model_validate_json(raw["audio"]))

    def lease(self, digest: str, holder: str) -> bool:
        """True if this holder may synthesize; False if another one is doing it now."""
        return bool(
            self._redis.set(keys.cache_lease_key(digest), holder, nx=True, px=self._lease_ms)
        )

    def lead(self, digest: str, book_id: str, ttl_s: int) -> str | None:
        """None if this book is to be made (it leads its request now); else the id of the
        identical book being made, which this one now follows (tasks.keys.BOOK_FOLLOWS)."""
        leader = self._lead(
            keys=[
                keys.book_leader_key(digest), keys.job_key(book_id),
                keys.job_lease_key(book_id), keys.book_follows_key(book_id),
            ],
            args=[book_id, ttl_s * 1000, keys.job_key("")],
        )  # fmt: skip
        return None if leader is None else str(leader)

    def release(self, digest: str, holder: str) -> None:
        key = keys.cache_lease_key(digest)
        if self._redis.get(key) == holder:
            self._redis.delete(key)

    def store(self, digest: str, storage_key: str, audio: AudioInfo) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(
            keys.cache_key(digest),
            mapping={"storage_key": storage_key, "audio": audio.model_dump_json()},
        )
        pipe.expire(keys.cache_key(digest), self._ttl_s)
        pipe.execute()

    def forget(self, digest: str, storage_key: str) -> None:
        """Drop the entry if it still points at `storage_key` (whose object is gone), never
        a newer entry another worker wrote meanwhile."""
        self._forget(keys=[keys.cache_key(digest)], args=[storage_key])

    def wait(self, digest: str, timeout_s: float, poll_s: float = 0.02) -> CachedAudio | None:
        """The entry once the leaseholder stored it; None if the lease ends without one."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            hit = self.lookup(digest)
            if hit is not None:
                return hit
            if not self._redis.exists(keys.cache_lease_key(digest)):
                return self.lookup(digest)
            time.sleep(poll_s)
        return None
