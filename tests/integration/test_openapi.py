"""`/openapi.json` against a real OpenAPI validator, and against the API that serves it: the
README promises it "lists every status each route answers", so each status the requests
below provoke from a real API process must be one that its route lists."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis
from openapi_spec_validator import validate

from tasks.settings import Settings
from tests.conftest import ApiServer

SPEECH = {"model": "tts-1", "voice": "alloy", "input": "Hello."}
# A key is the tenant's, whatever the route: one for each route.
KEY = {"Idempotency-Key": "openapi-job"}
BATCH_KEY = {"Idempotency-Key": "openapi-batch"}
SPEECH_KEY = {"Idempotency-Key": "openapi-speech"}


@pytest.fixture
def api(
    start_api: Callable[..., ApiServer],
    make_settings: Callable[..., Settings],
    redis_client: redis.Redis,
) -> ApiServer:
    # No worker: a speech request answers 504 once its second is up.
    return start_api(make_settings(speech_timeout_s=1, rate_limit_per_s=0))


def document(api: ApiServer) -> dict[str, Any]:
    spec: dict[str, Any] = httpx.get(api.url + "/openapi.json").json()
    return spec


def test_the_document_is_valid_openapi_with_each_parameter_once(api: ApiServer) -> None:
    spec = document(api)
    validate(spec)
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            # Header names are case-insensitive: "prefer" would repeat "Prefer".
            named = [(p["in"], p["name"].lower()) for p in op.get("parameters", [])]
            assert len(named) == len(set(named)), (method, path, named)


def test_the_headers_each_submit_route_reads_are_listed(api: ApiServer) -> None:
    spec = document(api)

    def headers(path: str) -> set[str]:
        params = spec["paths"][path]["post"].get("parameters", [])
        return {p["name"] for p in params if p["in"] == "header"}

    assert headers("/v1/jobs") == {"Idempotency-Key", "Prefer"}
    assert headers("/v1/jobs/batch") == {"Idempotency-Key"}
    assert headers("/v1/audio/speech") == {"Idempotency-Key"}


def test_every_status_the_api_answers_is_listed_for_its_route(api: ApiServer) -> None:
    spec = document(api)
    with api.client() as http:
        queued = http.post("/v1/jobs", json={"text": "Still queued."}).json()["id"]
        canceled = http.post("/v1/jobs", json={"text": "To cancel."}).json()["id"]
        long_id = "A" * 5000
        batch = {"jobs": [{"text": "One."}]}
        # (method, the route as the document names it, path, request options, status)
        cases: list[tuple[str, str, str, dict[str, Any], int]] = [
            ("POST", "/v1/jobs", "/v1/jobs", {"json": {"text": "Hi."}, "headers": KEY}, 202),
            ("POST", "/v1/jobs", "/v1/jobs", {"json": {"text": "Hi."}, "headers": KEY}, 200),
            ("POST", "/v1/jobs", "/v1/jobs", {"json": {"text": "Bye."}, "headers": KEY}, 422),
            ("POST", "/v1/jobs", "/v1/jobs",
             {"json": {"text": "Wait."}, "headers": {"Prefer": "wait=1"}}, 202),
            ("POST", "/v1/jobs", "/v1/jobs", {"content": b"{", "headers": {"Content-Type": "application/json"}}, 400),
            ("POST", "/v1/jobs", "/v1/jobs", {"content": b"hi", "headers": {"Content-Type": "text/plain"}}, 415),
            ("POST", "/v1/jobs/batch", "/v1/jobs/batch", {"json": batch, "headers": BATCH_KEY}, 202),
            ("POST", "/v1/jobs/batch", "/v1/jobs/batch", {"json": batch, "headers": BATCH_KEY}, 200),
            ("POST", "/v1/jobs/batch", "/v1/jobs/batch", {"json": {"jobs": [{"text": "Two."}]}, "headers": BATCH_KEY}, 422),
            ("GET", "/v1/jobs", "/v1/jobs", {"params": {"limit": 0}}, 422),
            ("GET", "/v1/jobs/{job_id}", f"/v1/jobs/{queued}", {}, 200),
            ("GET", "/v1/jobs/{job_id}", f"/v1/jobs/{long_id}", {}, 404),
            ("POST", "/v1/jobs/{job_id}/cancel", f"/v1/jobs/{canceled}/cancel", {}, 200),
            ("POST", "/v1/jobs/{job_id}/cancel", f"/v1/jobs/{canceled}/cancel", {}, 409),
            ("POST", "/v1/jobs/{job_id}/cancel", f"/v1/jobs/{long_id}/cancel", {}, 404),
            ("GET", "/v1/jobs/{job_id}/audio", f"/v1/jobs/{queued}/audio", {}, 409),
            ("GET", "/v1/jobs/{job_id}/timestamps", f"/v1/jobs/{queued}/timestamps", {}, 409),
            ("GET", "/v1/jobs/{job_id}/timestamps", f"/v1/jobs/{queued}/timestamps",
             {"params": {"format": "ass"}}, 422),
            ("GET", "/v1/jobs/{job_id}/timestamps", f"/v1/jobs/{queued}/timestamps",
             {"params": {"granularity": "bogus"}}, 422),
            ("GET", "/v1/jobs/{job_id}/audio/stream", f"/v1/jobs/{queued}/audio/stream",
             {"params": {"wait_s": 0}}, 409),
            ("GET", "/v1/jobs/{job_id}/audio/stream", f"/v1/jobs/{queued}/audio/stream",
             {"params": {"wait_s": 99}}, 422),
            ("POST", "/v1/audio/speech", "/v1/audio/speech", {"json": SPEECH, "headers": SPEECH_KEY}, 504),
            ("POST", "/v1/audio/speech", "/v1/audio/speech",
             {"json": {**SPEECH, "input": "Other."}, "headers": SPEECH_KEY}, 422),
            ("POST", "/v1/audio/speech", "/v1/audio/speech", {"json": {**SPEECH, "voice": 7}}, 400),
            ("POST", "/v1/audio/speech", "/v1/audio/speech",
             {"json": SPEECH, "headers": {"Content-Encoding": "gzip"}}, 415),
            ("GET", "/v1/models/{model}", f"/v1/models/{long_id}", {}, 404),
        ]  # fmt: skip
        for method, route, path, options, status in cases:
            response = http.request(method, path, **options)
            assert response.status_code == status, (method, path, response.text[:300])
            listed = spec["paths"][route][method.lower()]["responses"]
            assert str(status) in listed, (method, route, status, sorted(listed))
    with api.client(tenant=None) as anonymous:
        for route, ops in spec["paths"].items():
            if route.startswith("/v1/") and "{" not in route and "get" in ops:
                assert anonymous.get(route).status_code == 401
                assert "401" in ops["get"]["responses"], route
