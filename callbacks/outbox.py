"""The callbacks outbox: terminal events waiting in a Redis sorted set until they are due.

`JobStore` writes an event in the script that ends its job; this module is how the
callbacks worker takes due events with a lease and settles each attempt. A claim moves
the event's score to the end of its lease, so two workers never hold the same attempt and
a crashed worker's events come back by themselves when the lease runs out. Settling
checks the lease token, so a worker whose lease ran out cannot overwrite a newer attempt.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Literal, cast

import redis

from tasks import keys, scripts

CallbackState = Literal["pending", "delivered", "failed"]

# callbacks/lua/: each file says its KEYS and ARGV.
_CLAIM = scripts.load("callbacks", "outbox_claim")
_SETTLE = scripts.load("callbacks", "outbox_settle")


@dataclass(frozen=True)
class Event:
    """One claimed attempt of an event: a job's end, or its `job.progress`."""

    id: str  # the webhook-id
    job_id: str
    type: str  # job.succeeded | job.failed | job.canceled | job.progress
    first_ts: float  # when the first attempt was claimed: the schedule counts from here
    attempts: int  # attempts settled before this one
    lease: str
    # A job.progress event's progress JSON as it was queued ('' for other events).
    progress: str = ""


class Outbox:
    """Claims due events under a lease and settles attempts, each one Lua script."""

    def __init__(self, client: redis.Redis, lease_s: float) -> None:
        self._redis = client
        self.lease_s = lease_s
        self._claim = client.register_script(_CLAIM)
        self._settle = client.register_script(_SETTLE)

    def due(self, limit: int, now: float | None = None) -> list[Event]:
        """Up to `limit` events due by `now`, leased to the caller for `lease_s`."""
        now = time.time() if now is None else now
        token = secrets.token_hex(8)
        rows = self._claim(
            keys=[keys.CALLBACK_OUTBOX],
            args=[repr(now), repr(now + self.lease_s), limit, token, keys.callback_event_key("")],
        )
        return [
            Event(str(r[0]), str(r[1]), str(r[2]), float(r[3]), int(r[4]), token, str(r[5]))
            for r in rows
        ]

    def settle(
        self,
        event: Event,
        state: CallbackState,
        last_status: int | None,
        next_due: float = 0.0,
    ) -> bool:
        """Record the attempt; `pending` puts the event back, due at `next_due`. False if
        the lease was lost (another worker owns the event now) and nothing was written."""
        attempts = self._settle(
            keys=[
                keys.CALLBACK_OUTBOX,
                keys.callback_event_key(event.id),
                keys.job_key(event.job_id),
            ],
            args=[
                event.id,
                event.lease,
                state,
                "" if last_status is None else str(last_status),
                repr(next_due),
            ],
        )
        return int(attempts) >= 0

    def pending(self) -> dict[str, float]:
        """Every event in the outbox and when it is next due (for tests and operators)."""
        rows = cast(
            list[tuple[str, float]],
            self._redis.zrange(keys.CALLBACK_OUTBOX, 0, -1, withscores=True),
        )
        return {str(member): float(score) for member, score in rows}
