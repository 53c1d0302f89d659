"""The Redis job store: one hash per job, a per-tenant index, atomic status transitions.

Transitions are Lua scripts so that a check of the current status and the write that
follows are one step: a worker finishing late cannot overwrite `canceled`, and a
redelivered job cannot go back from `succeeded`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

import orjson
import redis

from tasks import keys, redis_url, scripts, units
from tasks.errors import DeadlineExceeded, WorkerLost
from tasks.jobs import AudioInfo, ErrorInfo, Job, JobStatus, Progress, job_id_floor, utc_now
from tasks.units import Part

TERMINAL = tuple(s.value for s in JobStatus if s.is_terminal())

# Fields stored as raw strings (read by Lua); every other field is JSON.
_RAW_FIELDS = {"status", "attempts", "created_ts"}

# Every write that must be atomic is one script in tasks/lua/; the ones that can end a job
# include release_active.lua (tasks.quota) and outbox_enqueue.lua (the callback event).
TRANSITION_LUA = scripts.load("tasks", "transition")
_CLAIM = scripts.load("tasks", "claim")
_RELEASE_LEASE = scripts.load("tasks", "release_lease")
_HOLD_ACTIVE = scripts.load("tasks", "hold_active")
_PROGRESS = scripts.load("tasks", "progress")
_FAN_OUT = scripts.load("tasks", "fan_out")
_PART_DONE = scripts.load("tasks", "part_done")
_KEEP_RUN = scripts.load("tasks", "keep_run")


class Claim(StrEnum):
    """What a worker should do with a delivery, decided atomically by the store."""

    RUN = "run"
    TERMINAL = "terminal"  # already succeeded/failed/canceled: ack, do nothing
    EXHAUSTED = "exhausted"  # past MAX_ATTEMPTS: now failed with worker_lost
    EXPIRED = "expired"  # past its deadline before it started: now failed
    MISSING = "missing"  # no record (expired by TTL or never written)
    # Another live run holds the job's lease (a duplicate delivery): ack, do nothing; if that
    # run dies, its lease lapses and the reconciler sends the job again.
    BUSY = "busy"
    # A long job that fanned out: its units run it (tasks.units); ack, do nothing.
    FANNED = "fanned"


@dataclass(frozen=True)
class ClaimResult:
    verdict: Claim
    attempts: int


@dataclass(frozen=True)
class TransitionResult:
    applied: bool
    previous: JobStatus | None


@dataclass(frozen=True)
class Unit:
    """A unit of a long job (tasks.units): whose, which, and its exact pieces."""

    parent: str
    index: int
    pieces: list[str]


@dataclass(frozen=True)
class PartsDone:
    """After a part is recorded: how many of the job's units have theirs, its progress,
    whether this call recorded it, the job's status, and which unit joins it ('' while
    parts are missing)."""

    recorded: int
    units: int
    progress: Progress | None
    new: bool
    status: str
    joiner: str


def encode_record(job: Job, now: float) -> dict[str, str]:
    """The hash fields of a new job's record, `created_ts` (epoch, read by Lua) included."""
    fields = _encode(job)
    fields["created_ts"] = repr(now)
    return fields


def _encode(job: Job) -> dict[str, str]:
    data = job.model_dump(mode="json")
    fields = {name: dump_json(value) for name, value in data.items()}
    fields["status"] = job.status.value
    fields["attempts"] = str(job.attempts)
    return fields


def dump_json(value: Any) -> str:
    """Compact JSON, by orjson (a third of json.dumps's time on a submit, bench.api); json
    for what orjson refuses (integers past 64 bits), so both write every value they did."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, separators=(",", ":"))


def transition_call(
    job_id: str, allowed: tuple[str, ...], to: JobStatus, ttl_s: int, **fields: Any
) -> tuple[list[str], list[str]]:
    """The KEYS and ARGV of transition.lua (`JobStore.transition`; the API's cancel awaits
    the same script with its async client, api.cancel)."""
    event_id = keys.callback_event_id(job_id, to.value)
    args: list[str] = [",".join(allowed), to.value, repr(time.time()), event_id, str(ttl_s)]
    for name, value in fields.items():
        args += [name, json.dumps(value, separators=(",", ":"))]
    event_key = keys.callback_event_key(event_id)
    return [keys.job_key(job_id), keys.CALLBACK_OUTBOX, event_key], args


# A job's record fields but its text (JobStore.get with text=False, api.reads).
FIELDS_BUT_TEXT = (*(name for name in Job.model_fields if name != "text"), "created_ts")

# Longer ids are never looked up: no job has one.
MAX_JOB_ID_CHARS = 64


def tenant_job(raw: dict[str, str], tenant: str) -> Job | None:
    """The job of the record `raw` (an HGETALL) if there is one and it belongs to `tenant`:
    other tenants' jobs do not exist. For readers with their own client (the API's async)."""
    if not raw.get("status") or "parent" in raw:
        return None  # a unit of a long job (tasks.units) is not a job of its own
    job = _decode(raw)
    return job if job.tenant == tenant else None


def _decode(raw: dict[str, str]) -> Job:
    data: dict[str, Any] = {}
    for name, value in raw.items():
        if name in _RAW_FIELDS:
            data[name] = value
        else:
            data[name] = json.loads(value)
    data.pop("created_ts", None)
    for name in units.UNIT_FIELDS:
        data.pop(name, None)
    return Job.model_validate(data)


class JobStore:
    """Reads and transitions job records; every write that must be atomic is one script."""

    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self._redis = client
        self._ttl_s = ttl_s
        # Each script may free a tenant's active slot (tasks.quota).
        self._transition = client.register_script(TRANSITION_LUA)
        self._release_lease = client.register_script(_RELEASE_LEASE)
        self._claim = client.register_script(_CLAIM)
        self._hold_active = client.register_script(_HOLD_ACTIVE)
        self._progress = client.register_script(_PROGRESS)
        self._fan_out = client.register_script(_FAN_OUT)
        self._part_done = client.register_script(_PART_DONE)
        self._keep_run = client.register_script(_KEEP_RUN)

    @classmethod
    def from_url(cls, url: str, ttl_s: int) -> JobStore:
        client = redis_url.client(
            url, decode_responses=True, socket_timeout=5, socket_connect_timeout=2
        )
        return cls(client, ttl_s)

    @property
    def redis(self) -> redis.Redis:
        return self._redis

    @property
    def ttl_s(self) -> int:
        """How long job records (and what lives beside them) are kept."""
        return self._ttl_s

    def create(self, job: Job, now: float | None = None) -> None:
        """Write the record and index it for its tenant in one transaction."""
        now = time.time() if now is None else now
        index = keys.tenant_jobs_key(job.tenant)
        fields = _encode(job)
        fields["created_ts"] = repr(now)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(keys.job_key(job.id), mapping=cast(Any, fields))
        pipe.expire(keys.job_key(job.id), self._ttl_s)
        floor = "(" + job_id_floor(int((now - self._ttl_s) * 1000))
        for key in (index, keys.tenant_status_jobs_key(job.tenant, job.status.value)):
            pipe.zadd(key, {job.id: 0})
            # Index entries older than the record TTL point at nothing: drop them.
            pipe.zremrangebylex(key, "-", floor)
            pipe.expire(key, self._ttl_s)
        self._hold_active(
            keys=[keys.tenant_active_key(job.tenant)], args=[job.id, self._ttl_s], client=pipe
        )
        pipe.execute()

    def discard(self, job: Job) -> None:
        """Undo `create` when the job could not be enqueued: no half-made job stays, and
        its active slot (tasks.quota) is freed whatever its status (removing is idempotent)."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.zrem(keys.tenant_active_key(job.tenant), job.id)
        pipe.delete(keys.job_key(job.id))
        pipe.zrem(keys.tenant_jobs_key(job.tenant), job.id)
        for status in JobStatus:
            pipe.zrem(keys.tenant_status_jobs_key(job.tenant, status.value), job.id)
        pipe.execute()

    def get(self, job_id: str, text: bool = True) -> Job | None:
        """The job; with `text=False` its record's text is not read (it is ''): a book's
        may be a million characters, read by every one of its units otherwise."""
        if text:
            raw = cast(dict[str, str], self._redis.hgetall(keys.job_key(job_id)))
        else:
            values: Any = self._redis.hmget(keys.job_key(job_id), FIELDS_BUT_TEXT)
            raw = {k: v for k, v in zip(FIELDS_BUT_TEXT, values, strict=True) if v is not None}
            raw["text"] = '""'
        return _decode(raw) if raw.get("status") else None

    def get_for_tenant(self, tenant: str, job_id: str) -> Job | None:
        """The job if it exists and belongs to `tenant`; other tenants' jobs do not exist."""
        if len(job_id) > MAX_JOB_ID_CHARS:
            return None
        return tenant_job(cast(dict[str, str], self._redis.hgetall(keys.job_key(job_id))), tenant)

    def list(
        self, tenant: str, status: JobStatus | None, limit: int, cursor: str | None
    ) -> tuple[list[Job], str | None]:
        """The tenant's jobs (of `status`: its index, not a scan), newest first, `limit` at
        most, after `cursor` (a job id). The API reads with api.reads (one script)."""
        index = (
            keys.tenant_jobs_key(tenant)
            if status is None
            else keys.tenant_status_jobs_key(tenant, status.value)
        )
        found: list[Job] = []
        start = "(" + cursor if cursor else "+"
        page = max(limit, 50)
        last: str | None = None
        # A status filter may skip many entries; scan at most this many pages per call.
        for _ in range(20):
            ids = cast(
                list[str],
                self._redis.zrange(index, start, "-", desc=True, bylex=True, offset=0, num=page),
            )
            if not ids:
                return found, None
            pipe = self._redis.pipeline(transaction=False)
            for job_id in ids:
                pipe.hgetall(keys.job_key(job_id))
            for job_id, raw in zip(ids, pipe.execute(), strict=True):
                last = job_id
                if not raw.get("status"):
                    continue
                job = _decode(raw)
                if status is None or job.status == status:
                    found.append(job)
                    if len(found) == limit:
                        return found, job_id
            if len(ids) < page:
                return found, None
            start = "(" + ids[-1]
        return found, last

    def claim(
        self,
        job_id: str,
        max_attempts: int,
        holder: str = "",
        lease_ms: int = 0,
        stale: str = "",
    ) -> ClaimResult:
        """Count a run and move the job to `running`, or say why it must not run.

        With a `holder` (the name of this run, worker.lease), a job whose lease names another
        run is refused (`BUSY`), unless it is the `stale` run the caller knows is over; a job
        that runs is leased to `holder` for `lease_ms`."""
        lost = ErrorInfo(
            code=WorkerLost.code,
            message=f"the job was delivered {max_attempts} times and never finished",
        )
        late = ErrorInfo(
            code=DeadlineExceeded.code, message="the job did not start within deadline_s"
        )
        event_id = keys.callback_event_id(job_id, JobStatus.FAILED.value)
        verdict, _, attempts = self._claim(
            keys=[
                keys.job_key(job_id),
                keys.CALLBACK_OUTBOX,
                keys.callback_event_key(event_id),
                keys.job_lease_key(job_id),
            ],
            args=[
                json.dumps(utc_now()),
                repr(time.time()),
                max_attempts,
                lost.model_dump_json(),
                late.model_dump_json(),
                event_id,
                self._ttl_s,
                holder,
                lease_ms,
                stale,
            ],
        )
        return ClaimResult(Claim(verdict), int(attempts))

    def keep_run(self, job_id: str, holder: str, attempts: int, lease_ms: int) -> bool:
        """Whether the run `holder`, claimed as attempt `attempts`, still has the job: no
        later claim and no other run's lease (tasks/lua/keep_run.lua); if so, the lease
        names it again for `lease_ms`."""
        kept = self._keep_run(
            keys=[keys.job_key(job_id), keys.job_lease_key(job_id)],
            args=[holder, attempts, lease_ms],
        )
        return bool(kept)

    def lease_holder(self, job_id: str) -> str | None:
        """Whom the job's lease names now (worker.lease), if anyone."""
        return cast(str | None, self._redis.get(keys.job_lease_key(job_id)))

    def transition(
        self, job_id: str, allowed: tuple[str, ...], to: JobStatus, **fields: Any
    ) -> TransitionResult:
        """Set `to` and `fields` only if the current status is one of `allowed`; a terminal
        `to` also records the job's callback event in the outbox, in the same script."""
        script_keys, args = transition_call(job_id, allowed, to, self._ttl_s, **fields)
        applied, previous = self._transition(keys=script_keys, args=args)
        return TransitionResult(bool(applied), JobStatus(previous) if previous else None)

    def succeed(self, job_id: str, audio: AudioInfo) -> TransitionResult:
        return self.transition(
            job_id,
            ("running",),
            JobStatus.SUCCEEDED,
            audio=audio.model_dump(mode="json"),
            error=None,
            finished_at=utc_now(),
        )

    def fail(self, job_id: str, error: ErrorInfo) -> TransitionResult:
        return self.transition(
            job_id,
            ("queued", "running"),
            JobStatus.FAILED,
            error=error.model_dump(),
            finished_at=utc_now(),
        )

    def requeue(self, job_id: str, holder: str = "") -> TransitionResult:
        """A running job whose attempt failed transiently waits for its next delivery; the
        lease of this run (`holder`) goes, so the retry may run on any worker at once."""
        result = self.transition(job_id, ("running",), JobStatus.QUEUED)
        if result.applied and holder:
            self._release_lease(keys=[keys.job_lease_key(job_id)], args=[holder])
        return result

    def release_lease(self, job_id: str, holder: str) -> None:
        """Drop the job's lease if this run (`holder`) holds it."""
        if holder:
            self._release_lease(keys=[keys.job_lease_key(job_id)], args=[holder])

    def cancel(self, job_id: str) -> TransitionResult:
        return self.transition(
            job_id, ("queued", "running"), JobStatus.CANCELED, finished_at=utc_now()
        )

    def record_progress(self, job_id: str, progress: Progress, event: bool = False) -> bool:
        """Show how far a running job is (`progress` on the job) and, with `event`, queue
        its `job.progress` webhook (tasks.keys.progress_event_id); False if not running."""
        event_id = keys.progress_event_id(job_id, progress.pieces_done) if event else ""
        applied = self._progress(
            keys=[keys.job_key(job_id), keys.CALLBACK_OUTBOX, keys.callback_event_key(event_id)],
            args=[progress.model_dump_json(), event_id, repr(time.time()), self._ttl_s],
        )
        return bool(applied)

    def fan_out(
        self,
        job: Job,
        groups: Sequence[Sequence[str]],
        stream_ttl_s: int = 3600,
        now: float | None = None,
    ) -> int:
        """Make the running `job` its units, one per group of pieces, and queue them in
        order for the dispatcher (tasks/lua/fan_out.lua). Returns 1 when done now, 2 when an
        earlier run did it, 0 when the job no longer runs."""
        now = time.time() if now is None else now
        progress = Progress(pieces_done=0, pieces_total=sum(map(len, groups)), audio_s=0.0)
        args: Any = [
            self._ttl_s, job.tenant, progress.model_dump_json(), len(groups), stream_ttl_s
        ]  # fmt: skip
        for index, pieces in enumerate(groups):
            unit_id = units.unit_id(job.id, index)
            record = job.model_copy(
                update={
                    "id": unit_id,
                    "status": JobStatus.QUEUED,
                    "text": "",  # its pieces are the text (the book's is not copied twice)
                    "storage_key": units.part_key(job.storage_key, index, "unit"),
                    "deadline_s": None, "metadata": {}, "attempts": 0, "started_at": None,
                    "callback": None, "callback_events": [], "progress": None, "units": None,
                }
            )  # fmt: skip
            fields = encode_record(record, now)
            fields.update(
                parent=dump_json(job.id), unit=str(index), pieces=dump_json(pieces)
            )  # fmt: skip
            args += [keys.job_key(unit_id), unit_id, orjson.dumps(fields).decode()]
        pending = keys.pending_key(job.model, job.priority.value, job.tenant)
        ring = keys.pending_tenants_key(job.model, job.priority.value)
        script_keys = [
            keys.job_key(job.id), keys.job_lease_key(job.id), keys.inflight_key(job.model),
            pending, ring, keys.audio_stream_key(job.id),
        ]  # fmt: skip
        return int(self._fan_out(keys=script_keys, args=args))

    def unit(self, unit_id: str) -> Unit | None:
        """The unit `unit_id` names, if it is one and its record is there."""
        if units.parent_of(unit_id) is None:
            return None
        found: Any = self._redis.hmget(keys.job_key(unit_id), [*units.UNIT_FIELDS])
        parent, index, pieces = cast(tuple[str | None, str | None, str | None], tuple(found))
        if parent is None or index is None or pieces is None:
            return None
        return Unit(parent=json.loads(parent), index=int(index), pieces=json.loads(pieces))

    def record_part(
        self, job_id: str, unit: Unit, part: Part | None, event: bool = False
    ) -> PartsDone:
        """Record `unit`'s part once (None: a rerun, whose part is recorded already), count
        its pieces in the job's progress (with `event`, queue a `job.progress` webhook),
        and name the job's joiner once every unit has its part (tasks/lua/part_done.lua)."""
        seconds = sum(part.lengths) / part.sample_rate if part else 0.0
        event_prefix = keys.progress_event_id(job_id, 0)[:-1] if event else ""
        recorded, total, raw, new, status, joiner = self._part_done(
            keys=[keys.job_key(job_id), units.parts_key(job_id), keys.CALLBACK_OUTBOX],
            args=[
                unit.index, part.model_dump_json() if part else "", len(unit.pieces), seconds,
                self._ttl_s, units.unit_id(job_id, unit.index), event_prefix,
                keys.callback_event_key(""), repr(time.time()),
            ],
        )  # fmt: skip
        return PartsDone(
            recorded=int(recorded), units=int(total),
            progress=Progress.model_validate_json(raw) if raw else None,
            new=bool(int(new)), status=str(status), joiner=str(joiner),
        )  # fmt: skip

    def has_part(self, job_id: str, index: int) -> bool:
        return bool(self._redis.hexists(units.parts_key(job_id), str(index)))

    def parts(self, job_id: str) -> dict[int, Part]:
        """The parts recorded so far, by unit index."""
        raw = cast(dict[str, str], self._redis.hgetall(units.parts_key(job_id)))
        return {
            int(index): Part.model_validate_json(value)
            for index, value in raw.items()
            if index.isdigit()  # not the `joiner` field
        }

    def forget_parts(self, job_id: str) -> None:
        self._redis.delete(units.parts_key(job_id))

    def ping(self) -> bool:
        return bool(self._redis.ping())
