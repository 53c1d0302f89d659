"""A job's audio while it is made (`/audio/stream`) and its timings (`/timestamps`).

The stream relays the job's Redis stream (tasks.streams) as chunked HTTP: the response
starts with the first audio, each later stretch follows as soon as it and all before it are
done, and the response ends once the job is recorded terminal. A job that ended without
a stream (a cache hit, a stream expired or trimmed before this listener came) is a 307 to
its stored audio. `open_stream` is the relay alone: `POST /v1/audio/speech` with
`stream_format: audio` answers with it too (api.openai).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Annotated, Any, Literal, cast

import redis.asyncio
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse

from api import errors
from api.auth import authenticate
from api.ogg import OggOpusWriter
from api.reads import JobReads
from tasks import keys, streams, timestamps
from tasks.jobs import AudioFormat, Job, JobStatus
from tasks.store import TERMINAL
from tasks.tenants import Tenant
from tasks.units import unit_id

router = APIRouter(prefix="/v1")
TenantDep = Annotated[Tenant, Depends(authenticate)]

# How long one XREAD waits before the reader looks at the job's status again.
BLOCK_MS = 1000
# How long a request waits for a job's first audio, at most (`wait_s` may ask for less):
# HTTP clients and proxies give up on a response that sends nothing for long, so a job with
# a queue ahead of it answers 409 with Retry-After and the client asks again.
FIRST_AUDIO_WAIT_S = 8.0


async def _job(request: Request, tenant: Tenant, job_id: str) -> Job:
    """The tenant's job through the API's rate-limited read (api.reads), else 404."""
    reads: JobReads = request.app.state.reads
    return await reads.owned(tenant.id, job_id)


@router.get(
    "/jobs/{job_id}/timestamps",
    responses={
        200: {"content": {"text/vtt": {}, "application/x-subrip": {}}},
        **errors.responses(*errors.AUDIO_ERRORS, errors.InvalidRequest),
    },
    response_model=None,
)
async def get_timestamps(
    request: Request,
    job_id: str,
    tenant: TenantDep,
    format: Annotated[Literal["json", "vtt", "srt"], Query()] = "json",
    granularity: Annotated[
        timestamps.Granularity | None,
        Query(description="left out: what the engine measured (word where it can)"),
    ] = None,
) -> Response | dict[str, Any]:
    """When each word (or sentence) is spoken: `{"granularity", "items"}`, or captions with
    one cue per item. `granularity=sentence` joins a job's words into sentences; `word` is
    422 for a job whose engine measured sentences only (words are never guessed)."""
    job = await _job(request, tenant, job_id)
    if job.status is not JobStatus.SUCCEEDED:
        raise errors.JobNotFinished(
            f"the job is {job.status.value}; timestamps exist once it succeeded"
        )
    client: redis.asyncio.Redis = request.app.state.redis
    found = timestamps.parse(await client.get(keys.timestamps_key(job.storage_key)))
    if found is None:
        raise errors.NotFound("this job's timestamps are gone (made before they were kept)")
    if granularity is timestamps.Granularity.SENTENCE:
        found = timestamps.by_sentence(found)
    elif granularity is not None and found.granularity is not granularity:
        raise errors.InvalidRequest(
            "granularity: this job has no word timings (its engine measured sentences "
            "only); ask granularity=sentence or leave it out"
        )
    if format == "vtt":
        return PlainTextResponse(timestamps.to_vtt(found), media_type="text/vtt")
    if format == "srt":
        return PlainTextResponse(timestamps.to_srt(found), media_type="application/x-subrip")
    return found.model_dump(mode="json")


class NoAudioYet(Exception):
    """The job's first audio did not come within the wait: the client asks again."""


class StreamGap(Exception):
    """Entries this listener still needed were trimmed away: it cannot go on seamlessly."""


class PieceReader:
    """The job's stream entries as bytes, each index once and in order, until its end.

    A long job (tasks.units) is read unit by unit: unit n's stream to its end, then unit
    n+1's (its bytes continue the first unit's container), then the job's own stream for
    its end. A job that fans out while this reader waits is followed into its units."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        status_client: redis.asyncio.Redis,
        job_id: str,
        units: int | None = None,
    ):
        self._client = client
        self._status_client = status_client
        self._job_id = job_id
        self._units = units
        self._unit = 0
        # After the last unit: only the job's end is awaited.
        self._tail = False
        self._key = streams.stream_key(job_id if units is None else unit_id(job_id, 0))
        self._last_id: bytes | str = "0-0"
        self._next = 0
        self._started = False

    async def _state(self) -> tuple[str | None, int | None]:
        """The job's status and how many units it fanned out into (None: it runs as one)."""
        found: Any = await self._status_client.hmget(
            keys.job_key(self._job_id), ["status", "units"]
        )
        status, units = found
        return status, (int(units) if units and units != "null" else None)

    def _follow(self, unit: int | None) -> None:
        """Read unit `unit`'s stream next (None: the job's own, for its end)."""
        self._tail = unit is None
        self._unit = unit or 0
        job_id = self._job_id if unit is None else unit_id(self._job_id, unit)
        self._key = streams.stream_key(job_id)
        self._last_id = "0-0"
        self._next = 0

    def _after_unit(self) -> bool:
        """Move past the unit just read; False when there is none."""
        if self._units is None or self._tail:
            return False
        self._follow(self._unit + 1 if self._unit + 1 < self._units else None)
        return True

    async def _read(self, block_ms: int | None) -> list[tuple[bytes, dict[bytes, bytes]]]:
        found: Any = await self._client.xread({self._key: self._last_id}, count=256, block=block_ms)
        return cast(list[tuple[bytes, dict[bytes, bytes]]], found[0][1]) if found else []

    async def chunks(self, first_within_s: float) -> AsyncGenerator[bytes]:
        """Raises NoAudioYet if the first entry is not there within `first_within_s` (each
        wait is bounded by it, so no Redis command is ever cancelled midway)."""
        deadline = time.monotonic() + first_within_s
        while True:
            block_ms = BLOCK_MS
            if not self._started:
                left_ms = int((deadline - time.monotonic()) * 1000)
                if left_ms <= 0 and (await self._state())[0] not in _ENDED:
                    raise NoAudioYet
                block_ms = max(1, min(BLOCK_MS, left_ms))
            entries = await self._read(block_ms)
            if not entries:
                status, units = await self._state()
                if self._units is None and units is not None:
                    self._units = units  # it fanned out meanwhile
                    self._follow(0)
                    continue
                if status not in _ENDED:
                    continue
                # Recorded terminal: what was written before that is all there will be.
                entries = await self._read(None)
                if not entries:
                    # A book that succeeded has every unit's audio in its stream already,
                    # unless that stream expired: then the rest is not here to send.
                    if status == JobStatus.SUCCEEDED.value and self._units is not None:
                        if not self._tail and not await self._client.exists(self._key):
                            raise StreamGap(f"{self._key} expired")
                        if self._after_unit():
                            continue
                    return
            for entry_id, fields in entries:
                self._last_id = entry_id
                if b"units" in fields:
                    if self._units is not None:
                        continue  # known already (the tail of a book's own stream)
                    self._units = int(fields[b"units"])  # it fanned out: read its units
                    self._follow(0)
                    break
                if b"end" in fields:
                    if fields[b"end"] == b"succeeded" and self._after_unit():
                        break
                    return
                index = int(fields[b"i"])
                if index < self._next:
                    continue  # a retried run writing its pieces again
                if index > self._next:
                    raise StreamGap(f"entry {self._next} of {self._key} was trimmed")
                self._next += 1
                self._started = True
                yield fields[b"d"]


async def _ogg_pages(chunks: AsyncGenerator[bytes]) -> AsyncGenerator[bytes]:
    """An Opus job's entries (its packets) as the pages of one Ogg stream (api.ogg)."""
    writer = OggOpusWriter()
    try:
        async for entry in chunks:
            pages = writer.feed(entry)
            if pages:
                yield pages
    finally:
        await chunks.aclose()


# No record (expired) counts as ended: nothing more will be written.
_ENDED = (None, *TERMINAL)


async def open_stream(
    request: Request, job: Job, first_within_s: float, headers: Mapping[str, str] | None = None
) -> StreamingResponse | None:
    """The job's stream as chunked HTTP in its stream format, answered once its first audio
    is there and ended once the job is recorded terminal; None if the job ended without a
    stream (a cache hit, no audio before it failed or was canceled) or the stream's start
    was trimmed away. NoAudioYet past `first_within_s`. A job that fails mid-stream just
    ends the body (HTTP trailers are not something clients read)."""
    reader = PieceReader(request.app.state.stream_redis, request.app.state.redis, job.id, job.units)
    chunks = reader.chunks(first_within_s)
    if streams.stream_format(job.format) is AudioFormat.OPUS:
        chunks = _ogg_pages(chunks)
    try:
        first = await anext(chunks, None)
    except StreamGap:
        first = None
    if first is None:
        await chunks.aclose()
        return None

    async def body() -> AsyncIterator[bytes]:
        yield first
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()

    return StreamingResponse(
        body(),
        media_type=streams.stream_format(job.format).content_type,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no", **(headers or {})},
    )


@router.get(
    "/jobs/{job_id}/audio/stream",
    responses={
        200: {
            "content": {
                "audio/wav": {},
                "audio/mpeg": {},
                "audio/pcm": {},
                "audio/ogg; codecs=opus": {},
            }
        },
        307: {"description": "the stored audio (the job ended without a stream)"},
        **errors.responses(*errors.AUDIO_ERRORS, errors.InvalidRequest),
    },
    response_model=None,
)
async def stream_audio(
    request: Request,
    job_id: str,
    tenant: TenantDep,
    wait_s: Annotated[float, Query(ge=0, le=FIRST_AUDIO_WAIT_S)] = FIRST_AUDIO_WAIT_S,
) -> Response:
    """The audio as chunked HTTP while the job is made, in its format if that streams (wav
    with an open length, mp3, pcm, Ogg Opus), else as WAV; a job already done without a
    stream is a 307.
    A job with no audio yet within `wait_s` (a queue ahead of it) is 409 with Retry-After."""
    job = await _job(request, tenant, job_id)
    try:
        response = await open_stream(request, job, wait_s)
    except NoAudioYet:
        raise errors.JobNotFinished(
            f"the job is {job.status.value} with no audio yet after {wait_s:g} s; ask again",
            {"Retry-After": str(errors.RETRY_AFTER_S)},
        ) from None
    if response is not None:
        return response
    job = await _job(request, tenant, job_id)
    if job.status is JobStatus.SUCCEEDED:
        return RedirectResponse(f"/v1/jobs/{job.id}/audio", status_code=307)
    raise errors.JobNotFinished(f"the job is {job.status.value}; it has no audio to stream")
