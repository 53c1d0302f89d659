"""What waits for each model: jobs in the fair pending lists, messages in the Celery lists,
and how old the oldest of them is. Read by the API's `/metrics` and by `ttsfleet fleet`.

Age comes from the job id (a ULID starts with its creation time), so it needs no extra
timestamp anywhere: the oldest pending job of a tenant is the right end of its list
(the API LPUSHes, the dispatcher RPOPs), and the oldest Celery message is the right end
of each priority list (kombu LPUSHes, BRPOPs) whose task id is the job id.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio

from tasks import keys
from tasks.app import broker_lists
from tasks.jobs import PRIORITY_ORDER, job_id_ms


@dataclass(frozen=True)
class Backlog:
    """One model's waiting work."""

    model: str
    pending: int  # in the per-tenant lists, not yet given to Celery
    queued: int  # in the Celery lists (all priorities), not yet taken by a worker
    oldest_age_s: float | None  # the oldest job among both; None when nothing waits

    @property
    def queue(self) -> str:
        return keys.synth_queue(self.model)

    @property
    def depth(self) -> int:
        return self.pending + self.queued


def message_job_id(raw: str | bytes) -> str | None:
    """The task id (our job id) of a kombu message as the Redis transport stores it."""
    try:
        message = json.loads(raw)
        headers = message.get("headers") or {}
        value = headers.get("id") or (message.get("properties") or {}).get("correlation_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def read_backlog(client: redis.Redis, model: str, now: float | None = None) -> Backlog:
    """Two pipelined round trips: the tenant rings, then every list's length and tail."""
    now = time.time() if now is None else now
    pipe = client.pipeline(transaction=False)
    _ask_rings(pipe, model)
    names, n_pending = _list_names(model, pipe.execute())
    pipe = client.pipeline(transaction=False)
    _ask_lists(pipe, names)
    return _backlog(model, n_pending, pipe.execute(), now)


async def read_backlog_async(
    client: redis.asyncio.Redis, model: str, now: float | None = None
) -> Backlog:
    """`read_backlog` awaited on an event loop (the API's /metrics, redis.asyncio)."""
    now = time.time() if now is None else now
    async with client.pipeline(transaction=False) as pipe:
        _ask_rings(pipe, model)
        names, n_pending = _list_names(model, await pipe.execute())
    async with client.pipeline(transaction=False) as pipe:
        _ask_lists(pipe, names)
        return _backlog(model, n_pending, await pipe.execute(), now)


def _ask_rings(pipe: Any, model: str) -> None:
    for priority in PRIORITY_ORDER:
        pipe.lrange(keys.pending_tenants_key(model, priority.value), 0, -1)


def _list_names(model: str, rings: list[Any]) -> tuple[list[str], int]:
    """Every pending list (tenant by tenant) then every Celery list of `model`, and how
    many of them are pending lists."""
    pending_lists = [
        keys.pending_key(model, p.value, _text(tenant))
        for p, tenants in zip(PRIORITY_ORDER, rings, strict=True)
        for tenant in tenants
    ]
    return pending_lists + broker_lists(model), len(pending_lists)


def _ask_lists(pipe: Any, names: list[str]) -> None:
    for name in names:
        pipe.llen(name)
        pipe.lindex(name, -1)


def _backlog(model: str, n_pending: int, replies: list[Any], now: float) -> Backlog:
    counts = [int(n) for n in replies[0::2]]
    tails = replies[1::2]
    oldest_ids = [_text(t) for t in tails[:n_pending] if t is not None]
    oldest_ids += [i for t in tails[n_pending:] if t is not None and (i := message_job_id(t))]
    created = [ms for job_id in oldest_ids if (ms := job_id_ms(job_id)) is not None]
    return Backlog(
        model=model,
        pending=sum(counts[:n_pending]),
        queued=sum(counts[n_pending:]),
        oldest_age_s=max(0.0, now - min(created) / 1000) if created else None,
    )


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
