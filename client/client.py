"""Clients for the v1 API: `Client` (blocking) and `AsyncClient` (asyncio), one behaviour."""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx

from client.env_file import env_file_path, read_env_file

TERMINAL = {"succeeded", "failed", "canceled"}
# The longest `Prefer: wait` the API honours (api.waiters.WAIT_MAX_S).
WAIT_MAX_S = 60


class ApiError(Exception):
    """An error answer from the API, with its stable code."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        retry_after: float | None = None,
        index: int | None = None,
    ) -> None:
        # Status 0: no request was made (NotConfigured); there is no status to show.
        super().__init__(f"{status} {code}: {message}" if status else f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        # Seconds the server asked us to wait (429, 503, 409 in flight), if it said.
        self.retry_after = retry_after
        # The item of a batch the error is about, if it named one.
        self.index = index


class NotConfigured(ApiError):
    """No API URL or key, in the environment or in the `env` file `make up` writes: no
    request was made (status 0)."""

    def __init__(self, message: str) -> None:
        super().__init__(0, "not_configured", message)


def error_of(response: httpx.Response) -> ApiError:
    """The `ApiError` an error answer (status >= 400) stands for."""
    retry_after = response.headers.get("retry-after")
    wait = float(retry_after) if retry_after and retry_after.isdigit() else None
    try:
        error = response.json()["error"]
        index = error.get("index")
        return ApiError(
            response.status_code,
            error["code"],
            error["message"],
            wait,
            index if isinstance(index, int) else None,
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return ApiError(response.status_code, "http_error", response.text[:200], wait)


def credentials(home: Path | None = None) -> tuple[str, str]:
    """`TTSFLEET_API_URL`/`TTSFLEET_API_KEY`, else the `env` file `make up` wrote under
    `TTSFLEET_HOME` (`.ttsfleet`)."""
    saved = read_env_file(env_file_path(home))
    url = os.environ.get("TTSFLEET_API_URL") or saved.get("TTSFLEET_API_URL")
    key = os.environ.get("TTSFLEET_API_KEY") or saved.get("TTSFLEET_API_KEY")
    if not url or not key:
        raise NotConfigured("set TTSFLEET_API_URL and TTSFLEET_API_KEY, or run `make up`")
    return url, key


def _session(base_url: str, api_key: str, timeout: float) -> dict[str, Any]:
    """The httpx options both clients open their session with."""
    return {
        "base_url": base_url.rstrip("/"),
        "headers": {"Authorization": f"Bearer {api_key}"},
        "timeout": timeout,
    }


def _job_body(text: str, options: dict[str, Any]) -> dict[str, Any]:
    return {"text": text, **options}


def _submit_headers(idempotency_key: str | None, wait: float | None) -> dict[str, str]:
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    if wait is not None:
        # RFC 7240: the API answers when the job ends, or after this many seconds.
        headers["Prefer"] = f"wait={max(0, min(WAIT_MAX_S, math.ceil(wait)))}"
    return headers


def _idempotency(key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": key} if key else {}


def _next_poll(delay: float) -> float:
    """Polls back off from the first delay to 1 s."""
    return min(delay * 1.5, 1.0)


def _jobs_query(status: str | None, limit: int, cursor: str | None = None) -> dict[str, Any]:
    """The query of `GET /v1/jobs`: one page of the tenant's jobs, newest first."""
    params: dict[str, Any] = {"limit": limit}
    if status:
        params["status"] = status
    if cursor:
        params["cursor"] = cursor
    return params


def _stream_path(job_id: str) -> str:
    return f"/v1/jobs/{job_id}/audio/stream"


def _may_ask_again(error: ApiError) -> bool:
    """A stream refused because the job has no audio yet (a queue ahead of it) is asked for
    again, unless the job has ended meanwhile."""
    return error.code == "job_not_finished"


def _retry_wait(error: ApiError) -> float:
    return float(error.retry_after or 1)


class Client:
    """Submit jobs, wait for them, download their audio."""

    def __init__(self, base_url: str, api_key: str, timeout: float = 30.0) -> None:
        self._http = httpx.Client(**_session(base_url, api_key, timeout))

    @classmethod
    def from_env(cls, home: Path | None = None) -> Client:
        """`TTSFLEET_API_URL`/`TTSFLEET_API_KEY`, else the `env` file `make up` wrote under
        `TTSFLEET_HOME` (`.ttsfleet`)."""
        return cls(*credentials(home))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise error_of(response)
        return response.json()

    def submit(
        self,
        text: str,
        idempotency_key: str | None = None,
        wait: float | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """Submit one job; with `wait` (seconds, at most 60) the answer comes once the job
        ended or `wait` passed, whichever is first (`Prefer: wait`)."""
        result: dict[str, Any] = self._call(
            "POST",
            "/v1/jobs",
            json=_job_body(text, options),
            headers=_submit_headers(idempotency_key, wait),
            timeout=self._http.timeout.read and self._http.timeout.read + (wait or 0),
        )
        return result

    def synthesize(self, text: str, timeout: float = 300.0, **options: Any) -> dict[str, Any]:
        """Submit and wait for the end: most jobs answer within the submit's own `Prefer:
        wait`; a longer one is polled for the rest of `timeout`."""
        started = time.monotonic()
        job = self.submit(text, wait=min(timeout, WAIT_MAX_S), **options)
        if job["status"] in TERMINAL:
            return job
        return self.wait(job["id"], timeout=max(0.0, timeout - (time.monotonic() - started)))

    def submit_batch(
        self, jobs: list[dict[str, Any]], idempotency_key: str | None = None
    ) -> list[dict[str, Any]]:
        """Up to 1000 job requests in one call, all or none; the jobs in request order."""
        result: list[dict[str, Any]] = self._call(
            "POST", "/v1/jobs/batch", json={"jobs": jobs}, headers=_idempotency(idempotency_key)
        )["jobs"]
        return result

    def get(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/v1/jobs/{job_id}")
        return result

    def cancel(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/v1/jobs/{job_id}/cancel")
        return result

    def jobs(self, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The tenant's `limit` most recent jobs (at most 500), newest first."""
        jobs: list[dict[str, Any]] = self._call(
            "GET", "/v1/jobs", params=_jobs_query(status, limit)
        )["jobs"]
        return jobs

    def iter_jobs(self, status: str | None = None, page: int = 500) -> Iterator[dict[str, Any]]:
        """Every job of the tenant, newest first, following `next_cursor` page by page."""
        cursor = None
        while True:
            answer = self._call("GET", "/v1/jobs", params=_jobs_query(status, page, cursor))
            yield from answer["jobs"]
            if not (cursor := answer["next_cursor"]):
                return

    def voices(self) -> list[dict[str, Any]]:
        voices: list[dict[str, Any]] = self._call("GET", "/v1/voices")
        return voices

    def wait(self, job_id: str, timeout: float = 300.0, poll_s: float = 0.1) -> dict[str, Any]:
        """Poll until the job is terminal; backs off from `poll_s` to 1 s."""
        deadline = time.monotonic() + timeout
        delay = poll_s
        while True:
            job = self.get(job_id)
            if job["status"] in TERMINAL:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout} s")
            time.sleep(delay)
            delay = _next_poll(delay)

    def stream(self, job_id: str) -> Iterator[bytes]:
        """The audio while it is made, chunk by chunk, until the job ends (waiting, as the
        API says, while a queued job has none yet); a job that finished without a stream
        is its downloaded file, whole."""
        while True:
            with self._http.stream("GET", _stream_path(job_id)) as response:
                if response.status_code == 307:
                    yield self.download(job_id)
                    return
                if response.status_code < 400:
                    yield from response.iter_raw()
                    return
                response.read()
                error = error_of(response)
            if not _may_ask_again(error) or self.get(job_id)["status"] in TERMINAL:
                raise error
            time.sleep(_retry_wait(error))

    def timestamps(self, job_id: str) -> dict[str, Any]:
        """`{"granularity": "word" | "sentence", "items": [{"text", "start_s", "end_s"}]}`."""
        result: dict[str, Any] = self._call("GET", f"/v1/jobs/{job_id}/timestamps")
        return result

    def download(self, job_id: str) -> bytes:
        """The audio bytes; follows the 307 to a presigned URL for S3 storage."""
        response = self._http.get(f"/v1/jobs/{job_id}/audio")
        if response.status_code == 307:
            # The presigned URL carries its own auth; the API key must not leak to it.
            response = httpx.get(response.headers["location"], timeout=60)
        if response.status_code >= 400:
            raise error_of(response)
        return response.content


class AsyncClient:
    """`Client` for asyncio programs: the same calls, awaited."""

    def __init__(self, base_url: str, api_key: str, timeout: float = 30.0) -> None:
        self._http = httpx.AsyncClient(**_session(base_url, api_key, timeout))

    @classmethod
    def from_env(cls, home: Path | None = None) -> AsyncClient:
        return cls(*credentials(home))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise error_of(response)
        return response.json()

    async def submit(
        self,
        text: str,
        idempotency_key: str | None = None,
        wait: float | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "POST",
            "/v1/jobs",
            json=_job_body(text, options),
            headers=_submit_headers(idempotency_key, wait),
            timeout=self._http.timeout.read and self._http.timeout.read + (wait or 0),
        )
        return result

    async def synthesize(self, text: str, timeout: float = 300.0, **options: Any) -> dict[str, Any]:
        started = time.monotonic()
        job = await self.submit(text, wait=min(timeout, WAIT_MAX_S), **options)
        if job["status"] in TERMINAL:
            return job
        remaining = max(0.0, timeout - (time.monotonic() - started))
        return await self.wait(job["id"], timeout=remaining)

    async def submit_batch(
        self, jobs: list[dict[str, Any]], idempotency_key: str | None = None
    ) -> list[dict[str, Any]]:
        answer = await self._call(
            "POST", "/v1/jobs/batch", json={"jobs": jobs}, headers=_idempotency(idempotency_key)
        )
        result: list[dict[str, Any]] = answer["jobs"]
        return result

    async def get(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", f"/v1/jobs/{job_id}")
        return result

    async def cancel(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("POST", f"/v1/jobs/{job_id}/cancel")
        return result

    async def jobs(self, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The tenant's `limit` most recent jobs (at most 500), newest first."""
        answer = await self._call("GET", "/v1/jobs", params=_jobs_query(status, limit))
        jobs: list[dict[str, Any]] = answer["jobs"]
        return jobs

    async def iter_jobs(
        self, status: str | None = None, page: int = 500
    ) -> AsyncIterator[dict[str, Any]]:
        """Every job of the tenant, newest first, one page (`page` jobs) fetched at a time as
        `async for` reaches it."""
        cursor = None
        while True:
            answer = await self._call("GET", "/v1/jobs", params=_jobs_query(status, page, cursor))
            for job in answer["jobs"]:
                yield job
            if not (cursor := answer["next_cursor"]):
                return

    async def voices(self) -> list[dict[str, Any]]:
        voices: list[dict[str, Any]] = await self._call("GET", "/v1/voices")
        return voices

    async def wait(
        self, job_id: str, timeout: float = 300.0, poll_s: float = 0.1
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        delay = poll_s
        while True:
            job = await self.get(job_id)
            if job["status"] in TERMINAL:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout} s")
            await asyncio.sleep(delay)
            delay = _next_poll(delay)

    async def stream(self, job_id: str) -> AsyncIterator[bytes]:
        """`Client.stream` for `async for`. The response stays open until the generator is
        closed: leaving the loop early, `contextlib.aclosing(client.stream(job_id))` closes
        it at the end of its block rather than when the generator is collected."""
        while True:
            async with self._http.stream("GET", _stream_path(job_id)) as response:
                if response.status_code == 307:
                    yield await self.download(job_id)
                    return
                if response.status_code < 400:
                    async for chunk in response.aiter_raw():
                        yield chunk
                    return
                await response.aread()
                error = error_of(response)
            if not _may_ask_again(error) or (await self.get(job_id))["status"] in TERMINAL:
                raise error
            await asyncio.sleep(_retry_wait(error))

    async def timestamps(self, job_id: str) -> dict[str, Any]:
        """`{"granularity": "word" | "sentence", "items": [{"text", "start_s", "end_s"}]}`."""
        result: dict[str, Any] = await self._call("GET", f"/v1/jobs/{job_id}/timestamps")
        return result

    async def download(self, job_id: str) -> bytes:
        response = await self._http.get(f"/v1/jobs/{job_id}/audio")
        if response.status_code == 307:
            async with httpx.AsyncClient(timeout=60) as bare:
                response = await bare.get(response.headers["location"])
        if response.status_code >= 400:
            raise error_of(response)
        return response.content
