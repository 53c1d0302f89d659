"""OpenAI's speech API on the fleet: `POST /v1/audio/speech`, `GET /v1/models`,
`GET /v1/audio/voices`, so that programs written for OpenAI (Open WebUI, Home Assistant,
the `openai` SDKs) use ttsfleet by changing the base URL and the key.

A speech request is a job like any other: it is admitted by the same Submission (rate
limit, quota, idempotency, fair pending lists, priority), dispatched to the same batching
workers and cached the same way; the request then waits for its end on the process's one
subscriber (api.waiters) and answers with the audio, or, asked `"stream_format": "audio"`,
relays the job's audio stream as it is made (api.streams). Every error on these routes is in
OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, `code` being ttsfleet's
stable code, because OpenAI's clients read that shape and no other.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import redis.asyncio
import redis.exceptions
from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from kombu.exceptions import OperationalError
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
)
from pydantic_core import PydanticCustomError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from api import errors
from api.auth import authenticate
from api.body import StrictJsonRoute, read_json
from api.jobs import IDEMPOTENCY_KEY_PARAMETER, build_job
from api.metrics import JOBS_SUBMITTED
from api.reads import JobReads
from api.streams import NoAudioYet, open_stream
from api.submission import Submission
from api.waiters import JobWaiters
from tasks import streams
from tasks.jobs import (
    LOUDNESS_MAX_LUFS,
    LOUDNESS_MIN_LUFS,
    AudioFormat,
    Job,
    JobRequest,
    JobStatus,
    Priority,
)
from tasks.settings import Settings
from tasks.storage import Storage
from tasks.tenants import Tenant

log = logging.getLogger(__name__)

# With no TTSFLEET_OPENAI_ALIASES, OpenAI's examples run as they are: its models mean the
# default model, its voices the default voice.
OPENAI_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
OPENAI_VOICES = (
    "alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse"
)  # fmt: skip
# OpenAI documents `pcm` as 24 kHz signed 16-bit little-endian mono.
OPENAI_PCM_RATE = 24000
SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
# When /v1/models says these models were made (OpenAI's field; ours have no such date).
_CREATED = int(time.time())


@dataclass(frozen=True)
class Aliases:
    """OpenAI model and voice names -> this fleet's."""

    models: dict[str, str]
    voices: dict[str, str]

    @classmethod
    def from_settings(cls, settings: Settings) -> Aliases:
        """The defaults, each table replaced where TTSFLEET_OPENAI_ALIASES gives one; a
        target the fleet does not serve stops the API at start-up, not at a request."""
        default_model = next(iter(settings.models))
        given = settings.openai_aliases or {}
        models = given.get("models", dict.fromkeys(OPENAI_MODELS, default_model))
        voices = given.get("voices", dict.fromkeys(OPENAI_VOICES, settings.default_voice))
        for alias, model in models.items():
            if model not in settings.models:
                raise ValueError(f"TTSFLEET_OPENAI_ALIASES: model {alias!r} -> unknown {model!r}")
        for alias, voice in voices.items():
            if settings.model_for_voice(voice) is None:
                raise ValueError(f"TTSFLEET_OPENAI_ALIASES: voice {alias!r} -> unknown {voice!r}")
        return cls(models=models, voices=voices)


class VoiceRef(BaseModel):
    """OpenAI's custom-voice form, `{"id": "..."}`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str


def _voice(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """One error for a voice that is neither form: pydantic's own names each member of the
    union (`voice.str: Input should be a valid string`), which says nothing of the object."""
    try:
        return handler(value)
    except ValidationError:
        raise PydanticCustomError(
            "voice_type",
            'Input should be a voice name (a string) or an object with its name in "id"',
        ) from None


class SpeechRequest(BaseModel):
    """OpenAI's speech request. Unknown fields are ignored, as are `instructions` (no engine
    here takes a style prompt); `stream_format` `audio` streams the audio as it is made,
    `sse` is refused (speech_request). `loudness_lufs` and `priority` are ttsfleet's own,
    as on POST /v1/jobs."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model: str = Field(min_length=1, max_length=256)
    input: str
    voice: Annotated[str | VoiceRef, WrapValidator(_voice)]
    response_format: SpeechFormat = "mp3"
    # strict: a boolean is not a number (pydantic would take `true` as 1).
    speed: float = Field(default=1.0, ge=0.25, le=4.0, allow_inf_nan=False, strict=True)
    instructions: str | None = None
    # `sse` is parsed to be refused with its own code (speech_request); the document lists
    # only what is served, so that a schema-valid request is never refused for its value.
    stream_format: Annotated[
        Literal["audio", "sse"] | None,
        WithJsonSchema(
            {"anyOf": [{"const": "audio", "type": "string"}, {"type": "null"}], "default": None}
        ),
    ] = Field(
        default=None,
        description="`audio`: the audio as chunked HTTP while it is made (mp3, wav, pcm; "
        "other formats answer whole); left out: the whole file once the job ends; "
        "OpenAI's `sse` is refused (400 unsupported_stream_format)",
    )
    loudness_lufs: float | None = Field(
        default=None, ge=LOUDNESS_MIN_LUFS, le=LOUDNESS_MAX_LUFS, allow_inf_nan=False, strict=True
    )
    priority: Priority = Priority.NORMAL


class SpeechError(errors.ApiError):
    """A bad speech request: 400 as OpenAI answers it, naming the parameter."""

    status = 400

    def __init__(self, code: str, message: str, param: str | None) -> None:
        super().__init__(message)
        self.code = code
        self.param = param


class JobCanceled(errors.ApiError):
    status, code = 409, "job_canceled"


class JobFailed(errors.ApiError):
    status, code = 500, "job_failed"


class SpeechTimeout(errors.ApiError):
    """The job is still queued or running: fetch it later at `Location`. OpenAI's SDKs
    retry a 5xx, which would submit the text again: `x-should-retry: false` tells them not."""

    status, code = 504, "speech_timeout"


# Job errors a client caused: its request, not the fleet, must change.
_CLIENT_JOB_ERRORS = {"invalid_text", "unknown_voice"}
# Our field names -> OpenAI's, to name the parameter at fault.
_PARAMS = {"text": "input", "format": "response_format", "voice": "voice", "speed": "speed"}


def _error_type(status: int) -> str:
    """OpenAI's `type` for an HTTP status."""
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 404:
        return "not_found_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def openai_error(
    status: int,
    code: str,
    message: str,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = {
        "error": {"message": message, "type": _error_type(status), "param": param, "code": code}
    }
    return JSONResponse(body, status, headers=dict(headers or {}))


def _param_of(exc: ValidationError | RequestValidationError) -> str | None:
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        if loc:
            return _PARAMS.get(loc[0], loc[0])
    return None


Endpoint = Callable[[Request], Coroutine[Any, Any, Response]]


class OpenAIRoute(StrictJsonRoute):
    """Renders every failure of its endpoint, authentication and validation included, in
    OpenAI's error shape; the rest of the API keeps ttsfleet's (api.errors)."""

    def get_route_handler(self) -> Endpoint:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except SpeechError as exc:
                return openai_error(exc.status, exc.code, exc.message, exc.param)
            except errors.ApiError as exc:
                return openai_error(exc.status, exc.code, exc.message, headers=exc.headers)
            except (ValidationError, RequestValidationError) as exc:
                message, _ = errors.describe(exc)
                return openai_error(400, "validation_error", message, _param_of(exc))
            except HTTPException as exc:
                codes = {404: "not_found", 405: "method_not_allowed"}
                code = codes.get(exc.status_code, "http_error")
                return openai_error(exc.status_code, code, str(exc.detail), headers=exc.headers)
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                    redis.exceptions.BusyLoadingError, OperationalError) as exc:  # fmt: skip
                log.warning("backend unavailable: %s", exc)
                err = errors.Unavailable("the job store is unreachable; retry shortly")
                return openai_error(err.status, err.code, err.message, headers=err.headers)
            except Exception:
                log.exception("unhandled error on %s", request.url.path)
                return openai_error(500, "internal_error", "unexpected server error")

        return handle


TenantDep = Annotated[Tenant, Depends(authenticate)]


def speech_request(body: Any) -> SpeechRequest:
    """An OpenAI speech body, or SpeechError naming the parameter at fault."""
    if not isinstance(body, dict):
        raise SpeechError("validation_error", "the body must be a JSON object", None)
    try:
        speech = SpeechRequest.model_validate(body)
    except ValidationError as exc:
        message, _ = errors.describe(exc)
        raise SpeechError("validation_error", message, _param_of(exc)) from exc
    if speech.stream_format == "sse":
        # OpenAI's own value, so not a validation_error: a client can tell it apart and
        # fall back to `audio` or to the whole file.
        raise SpeechError(
            "unsupported_stream_format",
            "stream_format 'sse' (server-sent events) is not served here; ask 'audio' for "
            "the audio as it is made, or leave it out for the whole file",
            "stream_format",
        )
    return speech


def speech_job_request(speech: SpeechRequest, settings: Settings, aliases: Aliases) -> JobRequest:
    """The job a speech request asks for, or SpeechError naming the parameter at fault.

    Text rules (non-blank, no NUL, `TTSFLEET_MAX_TEXT_CHARS`) are POST /v1/jobs' own."""
    fleet_voices = [v for spec in settings.models.values() for v in spec.voices]
    model = aliases.models.get(speech.model, speech.model)
    if model not in settings.models:
        known = ", ".join([*aliases.models, *settings.models])
        raise SpeechError(
            "unknown_model", f"no model {errors.shown(speech.model)}; known: {known}", "model"
        )
    name = speech.voice if isinstance(speech.voice, str) else speech.voice.id
    voice = aliases.voices.get(name, name)
    voice_model = settings.model_for_voice(voice)
    # A fleet model named outright must serve the voice; an OpenAI alias takes any voice.
    if voice_model is None or (speech.model in settings.models and voice_model != model):
        known = ", ".join([*aliases.voices, *fleet_voices])
        raise SpeechError(
            "unknown_voice",
            f"no voice {errors.shown(name)} for {errors.shown(speech.model)}; known: {known}",
            "voice",
        )
    fmt = AudioFormat(speech.response_format)
    try:
        return JobRequest.model_validate(
            {
                "text": speech.input,
                "voice": voice,
                "speed": speech.speed,
                "format": fmt,
                "sample_rate": OPENAI_PCM_RATE if fmt is AudioFormat.PCM else None,
                "loudness_lufs": speech.loudness_lufs,
                "priority": speech.priority,
            },
            context={"max_text_chars": settings.max_text_chars},
        )
    except ValidationError as exc:
        message, _ = errors.describe(exc)
        param = _param_of(exc)
        message = message.replace("text:", f"{param}:", 1) if param == "input" else message
        raise SpeechError("validation_error", message, param) from exc


async def read_speech_body(request: Request) -> Any:
    """The request's JSON body; the one place this router parses a body (api.body)."""
    return await read_json(request)


async def _audio(request: Request, job: Job) -> Response:
    storage: Storage = request.app.state.storage
    media_type = job.format.content_type
    # Which job made it: GET /v1/jobs/{id} tells its duration, rate and checksum.
    headers = {"X-Job-Id": job.id}
    path = storage.local_path(job.storage_key)
    if path is not None:
        return FileResponse(path, media_type=media_type, headers=headers)
    data = await run_in_threadpool(storage.read, job.storage_key)
    if data is None:
        raise errors.Unavailable("the audio object is not reachable right now")
    return Response(data, media_type=media_type, headers=headers)


def _ended_without_audio(job: Job) -> errors.ApiError:
    if job.status is JobStatus.CANCELED:
        return JobCanceled(f"job {job.id} was canceled before it ended")
    error = job.error
    code = error.code if error else "internal_error"
    message = f"job {job.id} failed: {error.message if error else 'no reason recorded'}"
    failed = JobFailed(message)
    failed.code = code
    if code in _CLIENT_JOB_ERRORS:
        failed.status = 400
    return failed


def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    """`schema` with its `$defs` references written out: the body is parsed by hand
    (read_speech_body), so OpenAPI gets the model's schema from here, whole."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _inline(defs[schema["$ref"].rsplit("/", 1)[1]], defs)
        return {k: _inline(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inline(item, defs) for item in schema]
    return schema


# OpenAI's error body, as the OpenAPI document shows it.
_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": "string"},
            },
        }
    },
}

# What every route here may answer besides its success.
_COMMON_ERRORS = {401: "no or a wrong API key", 503: "unavailable"}


def error_responses(described: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for these error statuses, each in OpenAI's error shape."""
    return {
        str(status): {
            "description": text,
            "content": {"application/json": {"schema": _ERROR_SCHEMA}},
        }
        for status, text in sorted({**_COMMON_ERRORS, **described}.items())
    }


def _speech_openapi() -> dict[str, Any]:
    schema = SpeechRequest.model_json_schema()
    body = _inline(schema, schema.get("$defs", {}))
    described = {
        400: "a bad request (param names the field); stream_format sse is "
        "unsupported_stream_format",
        404: "not_found: the job an Idempotency-Key names has expired",
        409: "job_canceled, or idempotency_in_flight with Retry-After",
        413: "payload_too_large",
        415: "unsupported_media_type",
        422: "idempotency_key_reused (the key came with another body), or validation_error "
        "(an Idempotency-Key of more than 255 characters)",
        429: "rate_limited or quota_exceeded, with Retry-After",
        500: "the job failed: code is its error code",
        504: "speech_timeout: the job goes on; fetch it at Location",
    }
    responses: dict[int | str, Any] = {
        "200": {
            "description": "the audio: the whole file once the job ends, or with "
            "stream_format audio (mp3, wav, pcm, opus) chunked from its first piece on; a job that "
            "fails mid-stream ends the body early (X-Job-Id names the job to look at)",
            "content": {"audio/*": {}},
        },
        **error_responses(described),
    }
    return {
        "parameters": [IDEMPOTENCY_KEY_PARAMETER],
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "responses": responses,
    }


def router(settings: Settings) -> APIRouter:
    """The OpenAI routes for this deployment's models, voices and aliases."""
    aliases = Aliases.from_settings(settings)
    api = APIRouter(prefix="/v1", route_class=OpenAIRoute, tags=["OpenAI-compatible"])

    @api.post(
        "/audio/speech",
        openapi_extra=_speech_openapi(),
        response_model=None,
        response_class=Response,
    )
    async def create_speech(request: Request, tenant: TenantDep) -> Response:
        """OpenAI's speech call: the audio once the job ends, within
        `TTSFLEET_SPEECH_TIMEOUT_S`; past it 504 `speech_timeout` with `Location`.
        With `"stream_format": "audio"` and an mp3, wav, pcm or opus job, the audio as chunked
        HTTP from its first piece on (the first piece awaited as long as the whole job
        would be), ending once the job is recorded terminal; a job that fails mid-stream
        just ends the body, since clients do not read HTTP trailers (its record says why).
        A job that ends without a stream (a result-cache hit) answers its stored file.
        An `Idempotency-Key` header works as on POST /v1/jobs."""
        # Read by hand, not as a parameter: FastAPI would document a 422 this route never
        # answers (its errors are 400, OpenAI's).
        idempotency_key = request.headers.get("idempotency-key")
        body = await read_speech_body(request)
        speech = speech_request(body)
        job_request = speech_job_request(speech, settings, aliases)
        job = build_job(settings, tenant, job_request)
        submission: Submission = request.app.state.submission
        done = await submission.submit(
            tenant, [job], "POST /v1/audio/speech", body, idempotency_key
        )
        job = done.jobs[0]
        if not done.replayed:
            JOBS_SUBMITTED.labels(tenant.id, job.voice).inc()
        deadline = time.monotonic() + settings.speech_timeout_s
        # AAC and FLAC would stream as WAV (tasks.streams): a client that asked for one
        # gets it whole instead, in the format it asked for.
        if (
            speech.stream_format == "audio"
            and streams.stream_format(job.format) is job.format
            and not job.status.is_terminal()
        ):
            first_within_s = max(0.0, deadline - time.monotonic())
            try:
                streamed = await open_stream(request, job, first_within_s, {"X-Job-Id": job.id})
            except NoAudioYet:
                streamed = None  # past the timeout: the read below answers 504 (or its end)
            if streamed is not None:
                return streamed
        waiters: JobWaiters = request.app.state.waiters
        reads: JobReads = request.app.state.reads
        job_id = job.id
        job = await waiters.wait(
            job_id,
            max(0.0, deadline - time.monotonic()),
            lambda: reads.owned(tenant.id, job_id),
        )
        if job.status is JobStatus.SUCCEEDED:
            return await _audio(request, job)
        if job.status.is_terminal():
            raise _ended_without_audio(job)
        raise SpeechTimeout(
            f"job {job.id} is still {job.status.value} after {settings.speech_timeout_s:g} s; "
            f"GET /v1/jobs/{job.id} follows it and /v1/jobs/{job.id}/audio has its audio",
            {"Location": f"/v1/jobs/{job.id}", "x-should-retry": "false"},
        )

    @api.get("/models", responses=error_responses({}))
    async def list_models(tenant: TenantDep) -> dict[str, Any]:
        """This fleet's models and the OpenAI names that stand for them."""
        return {"object": "list", "data": [_model(name) for name in _model_ids()]}

    @api.get("/models/{model}", responses=error_responses({404: "no such model"}))
    async def get_model(model: str, tenant: TenantDep) -> dict[str, Any]:
        if model not in _model_ids():
            raise errors.NotFound(f"no model {errors.shown(model)}")
        return _model(model)

    @api.get("/audio/voices", responses=error_responses({}))
    async def list_speech_voices(tenant: TenantDep) -> dict[str, Any]:
        """Every voice a speech request may name: the fleet's, then OpenAI's aliases."""
        voices = [
            {"id": voice, "name": f"{voice} ({info.language}, {model})"}
            for model, spec in settings.models.items()
            for voice, info in spec.voices.items()
        ]
        voices += [{"id": alias, "name": f"{alias} → {v}"} for alias, v in aliases.voices.items()]
        return {"voices": voices}

    # Anything else under these prefixes is answered in OpenAI's shape too: 405 for a known
    # path, 404 for any other. Registered last so that the routes above match first.
    known = {"/v1/audio/speech": "POST", "/v1/audio/voices": "GET", "/v1/models": "GET"}

    def allowed(path: str) -> str | None:
        if path.startswith("/v1/models/"):
            return "GET"
        return known.get(path)

    @api.api_route(
        "/audio/{rest:path}",
        methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
        include_in_schema=False,
    )
    @api.api_route(
        "/models",
        methods=["POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        include_in_schema=False,
    )
    @api.api_route(
        "/models/{rest:path}",
        methods=["POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        include_in_schema=False,
    )
    async def elsewhere(request: Request) -> Response:
        method = allowed(request.url.path.rstrip("/"))
        if method is not None:
            return openai_error(
                405,
                "method_not_allowed",
                f"{request.method} is not allowed here; use {method}",
                headers={"Allow": method},
            )
        return openai_error(404, "not_found", f"no route {errors.shown(request.url.path)}")

    def _model_ids() -> list[str]:
        return [*settings.models, *aliases.models]

    def _model(name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": _CREATED, "owned_by": "ttsfleet"}

    return api
