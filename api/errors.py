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
from pydantic import ValidationError
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


class NotFound(ApiError):
    status, code = 404, "not_found"


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


class Unavailable(ApiError):
    status, code = 503, "unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message, {"Retry-After": str(RETRY_AFTER_S)})


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def describe(exc: ValidationError | RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    """A one-line message naming the first bad field, plus every problem for programs."""
    details = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        details.append({"field": loc, "message": err.get("msg", "invalid")})
    first = details[0] if details else {"field": "", "message": "invalid request"}
    message = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
    return message, details


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
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        code = codes.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=exc.headers)

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
