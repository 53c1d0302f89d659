"""The `/v1` endpoints: where a job enters the fleet and where clients read it back."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from api import errors
from api.auth import authenticate
from api.body import BATCH_BODY_LIMIT, StrictJsonRoute, read_json
from api.cancel import Canceler
from api.metrics import JOBS_CANCELED, JOBS_SUBMITTED
from api.reads import JobReads
from api.submission import Submission
from api.views import encode
from api.waiters import WAIT_MAX_S, JobWaiters, prefer_wait
from tasks.errors import CallbackForbidden
from tasks.jobs import CallbackInfo, Job, JobRequest, JobStatus, new_job_id, utc_now
from tasks.settings import Settings
from tasks.ssrf import CallbackGuard
from tasks.storage import Storage
from tasks.store import JobStore
from tasks.tenants import Tenant

router = APIRouter(prefix="/v1", route_class=StrictJsonRoute)
TenantDep = Annotated[Tenant, Depends(authenticate)]

_CURSOR = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
BATCH_MAX_JOBS = 1000


def _job_request_schema() -> dict[str, Any]:
    schema = JobRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    return schema


# The submit routes read their headers themselves (see create_job), so FastAPI does not
# list them: OpenAPI gets them from here, each once.
IDEMPOTENCY_KEY_PARAMETER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": "the same key and body within 24 hours: the same job(s), answered 200",
}
PREFER_PARAMETER = {
    "name": "Prefer",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "`wait=N` (RFC 7240): answer when the job ends (200) or after N seconds "
    f"(202), N above {WAIT_MAX_S} counting as {WAIT_MAX_S}; with `Preference-Applied`",
}


def job_body_openapi() -> dict[str, Any]:
    """The request body as OpenAPI sees it (the body is parsed by hand, see api.body)."""
    return {
        "parameters": [IDEMPOTENCY_KEY_PARAMETER, PREFER_PARAMETER],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/JobRequest"}}
            },
        },
    }


def batch_body_openapi() -> dict[str, Any]:
    schema = {
        "type": "object",
        "required": ["jobs"],
        "additionalProperties": False,
        "properties": {
            "jobs": {
                "type": "array",
                "minItems": 1,
                "maxItems": BATCH_MAX_JOBS,
                "items": {"$ref": "#/components/schemas/JobRequest"},
            }
        },
    }
    return {
        "parameters": [IDEMPOTENCY_KEY_PARAMETER],
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
    }


def build_job(settings: Settings, tenant: Tenant, request: JobRequest) -> Job:
    """The record of a new job: voice resolved to its model, native rate filled in."""
    voice = request.voice or settings.default_voice
    model = settings.model_for_voice(voice)
    if model is None:
        known = ", ".join(v for spec in settings.models.values() for v in spec.voices)
        raise errors.UnknownVoice(
            f"no model serves voice {errors.shown(voice)}; known voices: {known}"
        )
    if request.callback_url is not None and not tenant.webhook_secrets:
        raise errors.CallbackSecretMissing(
            f"tenant {tenant.id!r} has no webhook secret, and every callback is signed: "
            "give it a webhook_secret in the tenants file"
        )
    job_id = new_job_id()
    native = settings.models[model].voices[voice].sample_rate
    return Job(
        id=job_id,
        tenant=tenant.id,
        status=JobStatus.QUEUED,
        created_at=utc_now(),
        voice=voice,
        model=model,
        text=request.text,
        speed=request.speed,
        format=request.format,
        sample_rate=request.format.fixed_rate or request.sample_rate or native,
        priority=request.priority,
        deadline_s=request.deadline_s,
        metadata=request.metadata,
        loudness_lufs=request.loudness_lufs,
        storage_key=f"{tenant.id}/{job_id}.{request.format.extension}",
        callback=CallbackInfo(url=str(request.callback_url)) if request.callback_url else None,
        callback_events=sorted(set(request.callback_events)),
    )


def check_callback_url(settings: Settings, url: str) -> None:
    """422 `callback_url_forbidden` for a URL the SSRF guard refuses (tasks.ssrf)."""
    try:
        CallbackGuard.from_settings(settings).check_at_submit(url)
    except CallbackForbidden as exc:
        raise errors.CallbackUrlForbidden(exc.message) from exc


def _state(request: Request) -> tuple[Settings, JobStore]:
    return request.app.state.settings, request.app.state.store


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer encoded once (api.views.encode): the routes return a `Response`, so
    FastAPI neither validates nor re-encodes what they built (bench.api's profile)."""
    return Response(encode(body), status, headers, media_type="application/json")


_REPLAY: dict[int | str, dict[str, Any]] = {
    200: {"description": "an Idempotency-Key replay: the job(s) as they are now"}
}
_SUBMIT_HEADERS = {
    "Location": {"description": "`/v1/jobs/{id}`", "schema": {"type": "string"}},
    "Preference-Applied": {
        "description": f"`wait=N` when `Prefer` asked for a wait (N at most {WAIT_MAX_S})",
        "schema": {"type": "string"},
    },
}


@router.post(
    "/jobs",
    status_code=202,
    openapi_extra=job_body_openapi(),
    responses={
        200: {
            "description": "the job ended within `Prefer: wait=N`, or an Idempotency-Key "
            "replay: the job as it is now",
            "headers": _SUBMIT_HEADERS,
        },
        202: {"description": "the job, queued", "headers": _SUBMIT_HEADERS},
        **errors.SUBMIT_RESPONSES,
    },
)
async def create_job(request: Request) -> Response:
    """Submit one job: 202 with the job and its `Location` (200 when an Idempotency-Key
    replays an earlier submit). With `Prefer: wait=N` (N <= 60), the answer comes when the
    job ends (200) or after N seconds (202), with `Preference-Applied`."""
    # The key and the header are read here, not declared as FastAPI dependencies: resolving
    # them cost a submit a seventh of its time (bench.api's profile). Same checks, same order.
    tenant = await authenticate(request)
    idempotency_key = request.headers.get("idempotency-key")
    settings, _ = _state(request)
    body = await read_json(request)
    try:
        job_request = JobRequest.model_validate(
            body, context={"max_text_chars": settings.max_document_chars}
        )
    except ValidationError as exc:
        message, details = errors.describe(exc)
        return JSONResponse(errors.error_body("validation_error", message, details=details), 422)
    if job_request.callback_url is not None:
        # Resolving the host blocks: off the event loop.
        await run_in_threadpool(check_callback_url, settings, str(job_request.callback_url))
    job = build_job(settings, tenant, job_request)
    submission: Submission = request.app.state.submission
    done = await submission.submit(tenant, [job], "POST /v1/jobs", body, idempotency_key)
    job = done.jobs[0]
    if not done.replayed:
        JOBS_SUBMITTED.labels(tenant.id, job.voice).inc()
    status = 200 if done.replayed else 202
    headers = {"Location": f"/v1/jobs/{job.id}"}
    wait_s = prefer_wait(request.headers.getlist("prefer"))
    if wait_s is not None:
        waiters: JobWaiters = request.app.state.waiters
        reads: JobReads = request.app.state.reads
        job_id = job.id
        job = await waiters.wait(job_id, wait_s, lambda: reads.owned(tenant.id, job_id))
        status = 200 if job.status.is_terminal() else 202
        headers["Preference-Applied"] = f"wait={wait_s}"
    return json_response(job.public(), status, headers=headers)


@router.post(
    "/jobs/batch",
    status_code=202,
    openapi_extra=batch_body_openapi(),
    responses={**_REPLAY, **errors.SUBMIT_RESPONSES},
)
async def create_jobs(request: Request, tenant: TenantDep) -> Response:
    """Submit up to 1000 jobs, all or none: 202 with `{"jobs": [...]}` in request order."""
    # Read by hand, as in create_job: a Header parameter would list it a second time.
    idempotency_key = request.headers.get("idempotency-key")
    settings, _ = _state(request)
    body = await read_json(request, limit=BATCH_BODY_LIMIT)
    items = body.get("jobs") if isinstance(body, dict) else None
    if not isinstance(items, list) or set(body) != {"jobs"}:
        raise errors.InvalidRequest('the body must be {"jobs": [job, ...]}')
    if not 1 <= len(items) <= BATCH_MAX_JOBS:
        raise errors.InvalidRequest(
            f"jobs: a batch holds 1 to {BATCH_MAX_JOBS} jobs, not {len(items)}"
        )
    jobs = []
    for index, item in enumerate(items):
        try:
            job_request = JobRequest.model_validate(
                item, context={"max_text_chars": settings.max_document_chars}
            )
            jobs.append(build_job(settings, tenant, job_request))
        except ValidationError as exc:
            message, details = errors.describe(exc)
            return JSONResponse(
                errors.error_body(
                    "validation_error", f"jobs[{index}].{message}", index=index, details=details
                ),
                422,
            )
        except (errors.UnknownVoice, errors.CallbackSecretMissing) as exc:
            return JSONResponse(
                errors.error_body(exc.code, f"jobs[{index}]: {exc.message}", index=index), 422
            )
    for index, job in enumerate(jobs):
        if job.callback is not None:
            try:
                await run_in_threadpool(check_callback_url, settings, job.callback.url)
            except errors.CallbackUrlForbidden as exc:
                return JSONResponse(
                    errors.error_body(exc.code, f"jobs[{index}]: {exc.message}", index=index), 422
                )
    submission: Submission = request.app.state.submission
    done = await submission.submit(tenant, jobs, "POST /v1/jobs/batch", body, idempotency_key)
    if not done.replayed:
        for job in jobs:
            JOBS_SUBMITTED.labels(tenant.id, job.voice).inc()
    return json_response(
        {"jobs": [job.public() for job in done.jobs]}, 200 if done.replayed else 202
    )


@router.get("/jobs/{job_id}", responses=errors.READ_RESPONSES, response_model=None)
async def get_job(request: Request, job_id: str) -> Response:
    """The job as it is now; another tenant's job is 404."""
    # One script (the read rate limit and the HGETALL, api.reads), its fields answered as
    # stored (api.views): no Job is built to poll one. The key is checked here rather than
    # by a FastAPI dependency (as in create_job).
    tenant = await authenticate(request)
    reads: JobReads = request.app.state.reads
    view = await reads.view(tenant.id, job_id)
    if view is None:
        raise errors.JobNotFound(job_id)
    return json_response(view)


@router.get("/jobs", responses=errors.LIST_RESPONSES)
async def list_jobs(
    request: Request,
    tenant: TenantDep,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(pattern=_CURSOR.pattern)] = None,
) -> dict[str, Any]:
    """The tenant's recent jobs, newest first; pass `next_cursor` back for the next page.
    With `status`, one page of that status's index (api.reads), not a scan."""
    reads: JobReads = request.app.state.reads
    jobs, next_cursor = await reads.list(tenant.id, status, limit, cursor)
    return {"jobs": [job.public() for job in jobs], "next_cursor": next_cursor}


@router.post("/jobs/{job_id}/cancel", responses=errors.CANCEL_RESPONSES, response_model=None)
async def cancel_job(request: Request, job_id: str, tenant: TenantDep) -> Response:
    """queued or running → canceled; a terminal job is 409."""
    canceler: Canceler = request.app.state.canceler
    view = await canceler.cancel(tenant.id, job_id)
    JOBS_CANCELED.labels(tenant.id).inc()
    return json_response(view)


@router.get(
    "/jobs/{job_id}/audio",
    responses={
        200: {"content": {"audio/*": {}}},
        307: {"description": "presigned URL"},
        **errors.AUDIO_RESPONSES,
    },
    response_model=None,
)
async def get_audio(request: Request, job_id: str, tenant: TenantDep) -> Response:
    """The audio itself (file storage) or a 307 to a presigned URL (S3)."""
    storage: Storage = request.app.state.storage
    reads: JobReads = request.app.state.reads
    job = await reads.owned(tenant.id, job_id)
    if job.status is not JobStatus.SUCCEEDED or job.audio is None:
        raise errors.JobNotFinished(
            f"the job is {job.status.value}; audio exists once it succeeded"
        )
    path = storage.local_path(job.storage_key)
    if path is not None:
        return FileResponse(
            path,
            media_type=job.format.content_type,
            filename=f"{job.id}.{job.format.extension}",
        )
    url = await run_in_threadpool(storage.presigned_url, job.storage_key)
    if url is None:
        raise errors.Unavailable("the audio object is not reachable right now")
    return RedirectResponse(url, status_code=307)


@router.get("/voices", responses=errors.VOICES_RESPONSES)
async def list_voices(request: Request, tenant: TenantDep) -> list[dict[str, Any]]:
    """Every voice some model serves, with its engine, language and native rate."""
    settings: Settings = request.app.state.settings
    return [
        {
            "id": voice,
            "model": model,
            "engine": spec.engine,
            "language": info.language,
            "sample_rate": info.sample_rate,
        }
        for model, spec in settings.models.items()
        for voice, info in spec.voices.items()
    ]
