"""Idempotency-Key (DESIGN §4, after the IETF httpapi Idempotency-Key draft).

A key is scoped to its tenant and remembered in Redis (so across API restarts) together
with a fingerprint of the request. The first request claims the key with an in-flight
marker in one atomic step; admission (api.intake) replaces the marker with the job ids in
the same script that creates the jobs. A duplicate then finds either the ids (replay the
jobs as they are now), another fingerprint (422), or the marker (409: still in flight).
The marker expires after `idempotency_in_flight_s`, so an API that died mid-request does
not block the key for a day.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

import redis.asyncio

from api import errors
from api.intake import IdempotencyRecord
from tasks import keys, scripts

MAX_KEY_CHARS = 255

# api/lua/: each file says its KEYS and ARGV.
_CLAIM = scripts.load("api", "idempotency_claim")
_ABANDON = scripts.load("api", "idempotency_abandon")


def fingerprint(route: str, body: Any) -> str:
    """The same JSON, however it is spaced or ordered, to the same route: the same request."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{route}\n{canonical}".encode()).hexdigest()


def record_value(fp: str, job_ids: list[str] | None, nonce: str = "") -> str:
    return json.dumps({"fp": fp, "jobs": job_ids, "n": nonce}, separators=(",", ":"))


@dataclass(frozen=True)
class Claimed:
    """This request owns the key: admit the jobs with `record`, or `abandon` it."""

    redis_key: str
    fp: str
    marker: str
    ttl_s: int

    def record(self, job_ids: list[str]) -> IdempotencyRecord:
        return IdempotencyRecord(self.redis_key, record_value(self.fp, job_ids), self.ttl_s)


class IdempotencyKeys:
    def __init__(self, client: redis.asyncio.Redis, ttl_s: int, in_flight_s: int) -> None:
        self._redis = client
        self._ttl_s = ttl_s
        self._in_flight_s = in_flight_s
        self._claim = client.register_script(_CLAIM)
        self._abandon = client.register_script(_ABANDON)

    async def claim(self, tenant: str, key: str, fp: str) -> Claimed | list[str]:
        """Claim `key` for this request, or return the job ids of the request that did.

        Raises 422 `idempotency_key_reused` for another request under the same key, 409
        `idempotency_in_flight` while the first one is still being admitted."""
        if not key or len(key) > MAX_KEY_CHARS:
            raise errors.InvalidRequest(
                f"Idempotency-Key: must be 1 to {MAX_KEY_CHARS} characters, not {len(key)}"
            )
        digest = hashlib.sha256(key.encode()).hexdigest()
        redis_key = keys.idempotency_key(tenant, digest)
        marker = record_value(fp, None, secrets.token_hex(8))
        existing = await self._claim(keys=[redis_key], args=[marker, self._in_flight_s])
        if not existing:
            return Claimed(redis_key, fp, marker, self._ttl_s)
        stored = json.loads(existing)
        if stored["fp"] != fp:
            raise errors.IdempotencyKeyReused(
                "this Idempotency-Key was used with a different request body"
            )
        if stored["jobs"] is None:
            raise errors.IdempotencyInFlight(
                "a request with this Idempotency-Key is still being processed; retry shortly"
            )
        job_ids: list[str] = stored["jobs"]
        return job_ids

    async def abandon(self, claimed: Claimed) -> None:
        """Free the key after a refusal, so a retry of the same request may proceed."""
        await self._abandon(keys=[claimed.redis_key], args=[claimed.marker])
