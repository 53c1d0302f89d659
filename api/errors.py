"""API errors as types with stable codes, and the handlers that render every failure as
`{"error": {"code", "message"}}` (DESIGN §4)."""

from __future__ import annotations

import logging
from typing import Any

import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.exceptions import HTTPException

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5


class ApiError(Exception):
    """An error the client caused or can act on; rendered with its status and code."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class InvalidJson(ApiError):
    status, code = 400, "invalid_json"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message, {"WWW-Authenticate": "Bearer"})


# How much of a client's value (an id, a voice name, a path) an error message shows: a
# 5,000-character id is not sent back whole.
SHOWN_CHARS = 64


def shown(value: str) -> str:
    """`value` quoted for a message, its first SHOWN_CHARS characters and "..." if longer."""
    return repr(value) if len(value) <= SHOWN_CHARS else repr(value[:SHOWN_CHARS]) + "..."


class NotFound(ApiError):
    status, code = 404, "not_found"


class JobNotFound(NotFound):
    """No such job for this tenant (another tenant's job does not exist either)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job {shown(job_id)}")


class JobNotFinished(ApiError):
    status, code = 409, "job_not_finished"


class JobAlreadyTerminal(ApiError):
    status, code = 409, "job_already_terminal"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class InvalidRequest(ApiError):
    status, code = 422, "validation_error"


class UnknownVoice(ApiError):
    status, code = 422, "unknown_voice"


class IdempotencyInFlight(ApiError):
    status, code = 409, "idempotency_in_flight"

    def __init__(self, message: str) -> None:
        super().__init__(message, {"Retry-After": "1"})


class IdempotencyKeyReused(ApiError):
    status, code = 422, "idempotency_key_reused"


class QuotaExceeded(ApiError):
    """Too many queued + running jobs; room appears as they finish."""

    status, code = 429, "quota_exceeded"

    def __init__(self, message: str, retry_after_s: int = RETRY_AFTER_S) -> None:
        super().__init__(message, {"Retry-After": str(retry_after_s)})


class RateLimited(ApiError):
    status, code = 429, "rate_limited"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message, {"Retry-After": str(retry_after_s)})


class CallbackUrlForbidden(ApiError):
    status, code = 422, "callback_url_forbidden"


class CallbackSecretMissing(ApiError):
    """A callback is always signed: a tenant without a webhook secret cannot ask for one."""

    status, code = 422, "callback_secret_missing"


class Unavailable(ApiError):
    status, code = 503, "unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message, {"Retry-After": str(RETRY_AFTER_S)})


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str
    message: str


class ErrorBody(BaseModel):
    """Every error the API answers (DESIGN §4), as the OpenAPI document shows it."""

    error: ErrorDetail


_RETRY_AFTER = {
    "Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}
}


def responses(*kinds: type[ApiError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for a route that may answer these errors: each status with the
    codes it carries, so the document lists every status the route answers."""
    codes: dict[int, list[str]] = {}
    for kind in kinds:
        codes.setdefault(kind.status, []).append(kind.code)
    out: dict[int | str, dict[str, Any]] = {}
    for status, names in sorted(codes.items()):
        entry: dict[str, Any] = {"description": "error: " + ", ".join(names), "model": ErrorBody}
        if status in (409, 429, 503):
            entry["headers"] = _RETRY_AFTER
        out[status] = entry
    return out


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


# What each kind of route may answer besides its success (api.jobs passes these as
# `responses=`): every /v1 route needs a key and a reachable Redis.
_V1 = (Unauthorized, Unavailable)
# NotFound: an Idempotency-Key replay whose job expired before the key (api.submission).
SUBMIT_RESPONSES = responses(
    *_V1, InvalidJson, NotFound, IdempotencyInFlight, PayloadTooLarge, UnsupportedMediaType,
    InvalidRequest, UnknownVoice, CallbackUrlForbidden, CallbackSecretMissing,
    IdempotencyKeyReused, QuotaExceeded, RateLimited,
)  # fmt: skip
READ_RESPONSES = responses(*_V1, NotFound, RateLimited)
LIST_RESPONSES = responses(*_V1, InvalidRequest, RateLimited)
CANCEL_RESPONSES = responses(*_V1, NotFound, JobAlreadyTerminal)
AUDIO_ERRORS = (*_V1, NotFound, JobNotFinished, RateLimited)
AUDIO_RESPONSES = responses(*AUDIO_ERRORS)
VOICES_RESPONSES = responses(Unauthorized)


def describe(exc: ValidationError | RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    """A one-line message naming the first bad field, plus every problem for programs."""
    details = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        details.append({"field": loc, "message": err.get("msg", "invalid")})
    first = details[0] if details else {"field": "", "message": "invalid request"}
    message = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
    return message, details


def _leaf_routes(routes: list[Any]) -> list[Any]:
    """The app's routes, those of included routers (FastAPI keeps them apart) included."""
    found: list[Any] = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        found += _leaf_routes(inner.routes) if inner is not None else [route]
    return found


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at the request's path; where a route names the path
    literally (`/v1/jobs/batch`), only those, not a template that also matches it
    (`/v1/jobs/{job_id}`)."""
    path = request.scope["path"]
    literal: set[str] = set()
    templated: set[str] = set()
    for route in _leaf_routes(request.app.router.routes):
        methods = getattr(route, "methods", None)
        if methods and route.path_regex.match(path):
            (templated if "{" in route.path else literal).update(methods)
    return sorted(literal or templated)


def install(app: FastAPI) -> None:
    """Register handlers so that no failure leaves the API as a bare 500 or HTML page."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message), exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, details = describe(exc)
        return JSONResponse(error_body("validation_error", message, details=details), 422)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        code = codes.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette's Allow names the first route on the path only (GET /v1/jobs hides
            # POST /v1/jobs): list every method some route serves there.
            headers["Allow"] = ", ".join(allowed_methods(request))
        return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=headers)

    async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
        log.warning("backend unavailable: %s", exc)
        err = Unavailable("the job store is unreachable; retry shortly")
        return JSONResponse(error_body(err.code, err.message), err.status, headers=err.headers)

    app.add_exception_handler(redis.exceptions.ConnectionError, _unavailable)
    app.add_exception_handler(redis.exceptions.TimeoutError, _unavailable)
    app.add_exception_handler(redis.exceptions.BusyLoadingError, _unavailable)
    app.add_exception_handler(OperationalError, _unavailable)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse(error_body("internal_error", "unexpected server error"), 500)
