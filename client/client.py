"""A small synchronous client for the v1 API."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

TERMINAL = {"succeeded", "failed", "canceled"}


class ApiError(Exception):
    """An error answer from the API, with its stable code."""

    def __init__(
        self, status: int, code: str, message: str, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        # Seconds the server asked us to wait (429, 503, 409 in flight), if it said.
        self.retry_after = retry_after


def read_env_file(path: Path) -> dict[str, str]:
    """`KEY=value` lines, as `make up` writes them to `.ttsfleet/env`."""
    values: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            name, sep, value = line.strip().partition("=")
            if sep and not name.startswith("#"):
                values[name.strip()] = value.strip()
    return values


class Client:
    """Submit jobs, wait for them, download their audio."""

    def __init__(self, base_url: str, api_key: str, timeout: float = 30.0) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
        )

    @classmethod
    def from_env(cls, home: Path | None = None) -> Client:
        """`TTSFLEET_API_URL`/`TTSFLEET_API_KEY`, else the `env` file `make up` wrote under
        `TTSFLEET_HOME` (`.ttsfleet`)."""
        home = home or Path(os.environ.get("TTSFLEET_HOME", ".ttsfleet"))
        saved = read_env_file(home / "env")
        url = os.environ.get("TTSFLEET_API_URL") or saved.get("TTSFLEET_API_URL")
        key = os.environ.get("TTSFLEET_API_KEY") or saved.get("TTSFLEET_API_KEY")
        if not url or not key:
            raise ApiError(
                0, "not_configured", "set TTSFLEET_API_URL and TTSFLEET_API_KEY, or run `make up`"
            )
        return cls(url, key)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            retry_after = response.headers.get("retry-after")
            wait = float(retry_after) if retry_after and retry_after.isdigit() else None
            try:
                error = response.json()["error"]
                raise ApiError(response.status_code, error["code"], error["message"], wait)
            except (ValueError, KeyError, TypeError):
                raise ApiError(response.status_code, "http_error", response.text[:200]) from None
        return response.json()

    def submit(
        self, text: str, idempotency_key: str | None = None, **options: Any
    ) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        result: dict[str, Any] = self._call(
            "POST", "/v1/jobs", json={"text": text, **options}, headers=headers
        )
        return result

    def submit_batch(
        self, jobs: list[dict[str, Any]], idempotency_key: str | None = None
    ) -> list[dict[str, Any]]:
        """Up to 1000 job requests in one call, all or none; the jobs in request order."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        result: list[dict[str, Any]] = self._call(
            "POST", "/v1/jobs/batch", json={"jobs": jobs}, headers=headers
        )["jobs"]
        return result

    def get(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/v1/jobs/{job_id}")
        return result

    def cancel(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/v1/jobs/{job_id}/cancel")
        return result

    def jobs(self, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        jobs: list[dict[str, Any]] = self._call("GET", "/v1/jobs", params=params)["jobs"]
        return jobs

    def iter_jobs(self, status: str | None = None, page: int = 500) -> Iterator[dict[str, Any]]:
        """Every job of the tenant, newest first, following `next_cursor` page by page."""
        params: dict[str, Any] = {"limit": page}
        if status:
            params["status"] = status
        while True:
            answer = self._call("GET", "/v1/jobs", params=params)
            yield from answer["jobs"]
            if not answer["next_cursor"]:
                return
            params["cursor"] = answer["next_cursor"]

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
            delay = min(delay * 1.5, 1.0)

    def download(self, job_id: str) -> bytes:
        """The audio bytes; follows the 307 to a presigned URL for S3 storage."""
        response = self._http.get(f"/v1/jobs/{job_id}/audio")
        if response.status_code == 307:
            # The presigned URL carries its own auth; the API key must not leak to it.
            response = httpx.get(response.headers["location"], timeout=60)
        if response.status_code >= 400:
            self._call("GET", f"/v1/jobs/{job_id}/audio")
        return response.content
