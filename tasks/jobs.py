"""The job as a value: what clients submit, what the store keeps, what crosses the queue."""

from __future__ import annotations

import json
import os
import time
from enum import StrEnum
from functools import lru_cache
from typing import Any, Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tasks.errors import InvalidJob

METADATA_MAX_BYTES = 16 * 1024
DEADLINE_MAX_S = 604800
SampleRate = Literal[8000, 16000, 22050, 24000, 44100, 48000]
# Webhook event types a job may list in `callback_events`: the terminal ones are always sent
# (listing them changes nothing); `job.progress` is the opt-in.
CallbackEvent = Literal["job.succeeded", "job.failed", "job.canceled", "job.progress"]
PROGRESS_EVENT = "job.progress"

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_job_id(now_ms: int | None = None) -> str:
    """A ULID: 48 bits of milliseconds then 80 random bits, so ids sort by creation time."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def job_id_floor(ms: int) -> str:
    """The smallest id created at `ms`: the lexical bound for pruning the tenant index."""
    value = ms << 80
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def job_id_ms(job_id: str) -> int | None:
    """When a job was created (unix ms), read from its id's first 10 characters; None for an
    id that is not a ULID."""
    ms = 0
    for char in job_id[:10].upper():
        digit = _CROCKFORD.find(char)
        if digit < 0:
            return None
        ms = ms * 32 + digit
    # A unit of a long job (tasks.units) is `<job id>.<n>`: its job's time.
    return ms if len(job_id) == 26 or job_id[26:27] == "." else None


def utc_now(now: float | None = None) -> str:
    """RFC 3339 UTC with milliseconds, the format of every timestamp in a job."""
    now = time.time() if now is None else now
    second = int(now)
    # Microseconds rounded as datetime.fromtimestamp rounds them, then cut to milliseconds.
    micros = round((now - second) * 1_000_000)
    if micros == 1_000_000:
        second, micros = second + 1, 0
    return f"{_utc_second(second)}.{micros // 1000:03d}Z"


@lru_cache(maxsize=4)
def _utc_second(second: int) -> str:
    # A second's text is built once, not on every submit of that second.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    def is_terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED)


class Priority(StrEnum):
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @property
    def celery_priority(self) -> int:
        """Kombu's Redis transport serves lower numbers first (see tasks.app priority_steps)."""
        return {"high": 0, "normal": 3, "low": 6}[self.value]


# Priorities served first to last (the dispatcher's order, and the backlog's).
PRIORITY_ORDER = (Priority.HIGH, Priority.NORMAL, Priority.LOW)


class AudioFormat(StrEnum):
    WAV = "wav"
    FLAC = "flac"
    OGG = "ogg"
    MP3 = "mp3"
    OPUS = "opus"  # Ogg Opus, always 48 kHz (RFC 7845 decoders play it at 48 kHz)
    AAC = "aac"  # AAC-LC in ADTS frames
    PCM = "pcm"  # raw 16-bit little-endian mono samples at the job's rate, no header
    MULAW = "mulaw"  # telephony: 8 kHz 8-bit G.711 mu-law in WAV
    ALAW = "alaw"  # telephony: 8 kHz 8-bit G.711 A-law in WAV

    @property
    def content_type(self) -> str:
        return _CONTENT_TYPES[self.value]

    @property
    def extension(self) -> str:
        """The file name extension of a download: telephony formats are WAV files."""
        return "wav" if self.value in ("mulaw", "alaw") else self.value

    @property
    def fixed_rate(self) -> int | None:
        """The only sample rate this format is made at, if it has one."""
        return _FIXED_RATES.get(self.value)


_CONTENT_TYPES = {
    "wav": "audio/wav",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg; codecs=opus",
    "aac": "audio/aac",
    "pcm": "audio/pcm",
    "mulaw": "audio/wav",
    "alaw": "audio/wav",
}
_FIXED_RATES = {"opus": 48000, "mulaw": 8000, "alaw": 8000}
LOUDNESS_MIN_LUFS, LOUDNESS_MAX_LUFS = -40.0, -5.0


class JobRequest(BaseModel):
    """The body of `POST /v1/jobs`. Validate with `context={"max_text_chars": n}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str
    voice: str | None = None
    # strict: a boolean is not a number (pydantic would take `true` as 1).
    speed: float = Field(default=1.0, ge=0.25, le=4.0, allow_inf_nan=False, strict=True)
    format: AudioFormat = AudioFormat.WAV
    sample_rate: SampleRate | None = None
    callback_url: AnyHttpUrl | None = None
    priority: Priority = Priority.NORMAL
    deadline_s: int | None = Field(default=None, ge=1, le=DEADLINE_MAX_S, strict=True)
    metadata: dict[str, Any] = Field(default_factory=dict)
    # Integrated loudness of the whole job (ITU-R BS.1770), true peak at most -1 dBTP;
    # None keeps the engine's own level (worker.loudness).
    loudness_lufs: float | None = Field(
        default=None, ge=LOUDNESS_MIN_LUFS, le=LOUDNESS_MAX_LUFS, allow_inf_nan=False, strict=True
    )
    callback_events: list[CallbackEvent] = Field(default_factory=list, max_length=4)

    @model_validator(mode="after")
    def _rate_fits_format(self) -> JobRequest:
        fixed = self.format.fixed_rate
        if fixed is not None and self.sample_rate not in (None, fixed):
            raise ValueError(f"format {self.format.value} is always {fixed} Hz")
        if self.callback_events and self.callback_url is None:
            raise ValueError("callback_events needs a callback_url")
        return self

    @field_validator("text")
    @classmethod
    def _text_fits(cls, value: str, info: ValidationInfo) -> str:
        text = value.strip()
        if not text:
            raise ValueError("text must contain at least one non-space character")
        if "\x00" in text:
            raise ValueError("text must not contain NUL characters")
        limit = (info.context or {}).get("max_text_chars", 5000)
        if len(text) > limit:
            raise ValueError(f"text is {len(text)} characters long; the limit is {limit}")
        return text

    @field_validator("metadata")
    @classmethod
    def _metadata_fits(cls, value: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(value, separators=(",", ":")).encode())
        if size > METADATA_MAX_BYTES:
            raise ValueError(f"metadata is {size} bytes as JSON; the limit is {METADATA_MAX_BYTES}")
        return value


class AudioInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    url: str
    format: AudioFormat
    sample_rate: int
    duration_s: float
    bytes: int
    sha256: str


class ErrorInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    message: str


class CallbackInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    url: str
    state: Literal["pending", "delivered", "failed"] = "pending"
    attempts: int = 0
    last_status: int | None = None


class Progress(BaseModel):
    """How far a job's synthesis is: pieces of its text done of all, seconds of audio made."""

    model_config = ConfigDict(frozen=True)

    pieces_done: int
    pieces_total: int
    audio_s: float


class Job(BaseModel):
    """A job record as the store holds it; `public()` is what clients see (DESIGN §4)."""

    model_config = ConfigDict(frozen=True)

    id: str
    tenant: str
    status: JobStatus
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    voice: str
    model: str
    text: str
    speed: float
    format: AudioFormat
    sample_rate: int
    priority: Priority
    deadline_s: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    loudness_lufs: float | None = None
    attempts: int = 0
    storage_key: str
    audio: AudioInfo | None = None
    error: ErrorInfo | None = None
    callback: CallbackInfo | None = None
    # Opted-in webhook events besides the terminal ones (`job.progress`); not shown.
    callback_events: list[str] = Field(default_factory=list)
    progress: Progress | None = None
    # How many units a long job fanned out into (tasks.units); None: it runs as one.
    units: int | None = None

    _PUBLIC = (
        "id status created_at started_at finished_at voice format sample_rate priority "
        "metadata loudness_lufs attempts audio error callback progress"
    ).split()

    def public(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        return {name: data[name] for name in self._PUBLIC}


class JobMessage(BaseModel):
    """What crosses the queue: ids only; the worker reads the rest from the job store."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: str = Field(min_length=1, max_length=64)
    tenant: str = Field(min_length=1, max_length=128)

    def encode(self) -> dict[str, str]:
        return self.model_dump()

    @classmethod
    def decode(cls, payload: object) -> JobMessage:
        try:
            return cls.model_validate(payload)
        except ValidationError as exc:
            raise InvalidJob(f"not a job message: {exc.errors()[0]['msg']}") from exc
