"""Idempotency-Key (DESIGN §4, after the IETF httpapi Idempotency-Key draft).

A key is scoped to its tenant and remembered in Redis (so across API restarts) together
with a fingerprint of the request and the ids of the jobs it made. The admission script
(api.intake) looks the key up and, if it is free, makes the jobs and stores the record in
the same step; so a duplicate finds either the record (replay the jobs as they are now) or
another fingerprint (422), and never a half-done first request. A record whose `jobs` is
null is an in-flight marker left by an API of an earlier release, which claimed the key in a
step of its own: 409 until it expires (`idempotency_in_flight_s`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from api import errors
from api.intake import IdempotencyRecord
from tasks import keys

MAX_KEY_CHARS = 255


def fingerprint(route: str, body: Any) -> str:
    """The same JSON, however it is spaced or ordered, to the same route: the same request."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{route}\n{canonical}".encode()).hexdigest()


def record_value(fp: str, job_ids: list[str] | None, nonce: str = "") -> str:
    return json.dumps({"fp": fp, "jobs": job_ids, "n": nonce}, separators=(",", ":"))


class IdempotencyKeys:
    def __init__(self, ttl_s: int) -> None:
        self._ttl_s = ttl_s

    def record(self, tenant: str, key: str, fp: str, job_ids: list[str]) -> IdempotencyRecord:
        """What admission stores under `key` if it is free; 422 for a key no request may use."""
        if not key or len(key) > MAX_KEY_CHARS:
            raise errors.InvalidRequest(
                f"Idempotency-Key: must be 1 to {MAX_KEY_CHARS} characters, not {len(key)}"
            )
        digest = hashlib.sha256(key.encode()).hexdigest()
        return IdempotencyRecord(
            keys.idempotency_key(tenant, digest), record_value(fp, job_ids), self._ttl_s
        )


def replayed_ids(used: str, fp: str) -> list[str]:
    """The job ids of the request that used the key first (its record `used`).

    Raises 422 `idempotency_key_reused` for another request under the same key, 409
    `idempotency_in_flight` while an earlier release's request is still being admitted."""
    stored = json.loads(used)
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
