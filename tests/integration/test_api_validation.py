"""Bad input gets a clear 4xx JSON error with a stable code and leaves no job behind."""

from __future__ import annotations

import gzip
import json
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import API_KEYS, ApiServer

JSON = {"Content-Type": "application/json"}
AUTH = {"Authorization": f"Bearer {API_KEYS['acme']}"}


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


# (name, headers, raw body, expected status, expected code)
CASES: list[tuple[str, dict[str, str], bytes, int, str]] = [
    ("empty text", {**AUTH, **JSON}, body({"text": ""}), 422, "validation_error"),
    ("whitespace text", {**AUTH, **JSON}, body({"text": " \n\t "}), 422, "validation_error"),
    ("text too long", {**AUTH, **JSON}, body({"text": "a" * 1_000_001}), 422, "validation_error"),
    ("NUL in text", {**AUTH, **JSON}, body({"text": "a\u0000b"}), 422, "validation_error"),
    (
        "missing text",
        {**AUTH, **JSON},
        body({"voice": "en_US-joe-medium"}),
        422,
        "validation_error",
    ),
    ("text is a number", {**AUTH, **JSON}, body({"text": 42}), 422, "validation_error"),
    ("text is null", {**AUTH, **JSON}, body({"text": None}), 422, "validation_error"),
    (
        "unknown voice",
        {**AUTH, **JSON},
        body({"text": "hi", "voice": "xx_XX-nobody"}),
        422,
        "unknown_voice",
    ),
    (
        "voice is a number",
        {**AUTH, **JSON},
        body({"text": "hi", "voice": 7}),
        422,
        "validation_error",
    ),
    (
        "speed too slow",
        {**AUTH, **JSON},
        body({"text": "hi", "speed": 0.1}),
        422,
        "validation_error",
    ),
    (
        "speed too fast",
        {**AUTH, **JSON},
        body({"text": "hi", "speed": 4.5}),
        422,
        "validation_error",
    ),
    (
        "speed is a word",
        {**AUTH, **JSON},
        body({"text": "hi", "speed": "fast"}),
        422,
        "validation_error",
    ),
    # NaN is not JSON: the strict parser (api.body) refuses it before validation.
    ("speed is NaN", {**AUTH, **JSON}, b'{"text": "hi", "speed": NaN}', 400, "invalid_json"),
    (
        "bad format",
        {**AUTH, **JSON},
        body({"text": "hi", "format": "aiff"}),
        422,
        "validation_error",
    ),
    (
        "bad sample rate",
        {**AUTH, **JSON},
        body({"text": "hi", "sample_rate": 12345}),
        422,
        "validation_error",
    ),
    (
        "bad priority",
        {**AUTH, **JSON},
        body({"text": "hi", "priority": "urgent"}),
        422,
        "validation_error",
    ),
    (
        "deadline zero",
        {**AUTH, **JSON},
        body({"text": "hi", "deadline_s": 0}),
        422,
        "validation_error",
    ),
    (
        "deadline too far",
        {**AUTH, **JSON},
        body({"text": "hi", "deadline_s": 604801}),
        422,
        "validation_error",
    ),
    (
        "callback not a URL",
        {**AUTH, **JSON},
        body({"text": "hi", "callback_url": "not a url"}),
        422,
        "validation_error",
    ),
    (
        "callback ftp",
        {**AUTH, **JSON},
        body({"text": "hi", "callback_url": "ftp://x.org/h"}),
        422,
        "validation_error",
    ),
    ("unknown field", {**AUTH, **JSON}, body({"text": "hi", "pitch": 3}), 422, "validation_error"),
    (
        "metadata is a list",
        {**AUTH, **JSON},
        body({"text": "hi", "metadata": [1, 2]}),
        422,
        "validation_error",
    ),
    (
        "metadata too big",
        {**AUTH, **JSON},
        body({"text": "hi", "metadata": {"x": "y" * 20000}}),
        422,
        "validation_error",
    ),
    ("body is an array", {**AUTH, **JSON}, body([{"text": "hi"}]), 422, "validation_error"),
    ("bad JSON", {**AUTH, **JSON}, b'{"text": "hi",', 400, "invalid_json"),
    ("empty body", {**AUTH, **JSON}, b"", 400, "invalid_json"),
    ("invalid UTF-8", {**AUTH, **JSON}, b'{"text": "\xff\xfe"}', 400, "invalid_json"),
    (
        "deeply nested JSON",
        {**AUTH, **JSON},
        b'{"text": "hi", "metadata": ' + b"[" * 30000 + b"]" * 30000 + b"}",
        400,
        "invalid_json",
    ),
    (
        "body over 4 MiB",
        {**AUTH, **JSON},
        body({"text": "hi", "metadata": {"x": "y" * (4 * 1024 * 1024)}}),
        413,
        "payload_too_large",
    ),
    (
        "text/plain body",
        {**AUTH, "Content-Type": "text/plain"},
        b"hello",
        415,
        "unsupported_media_type",
    ),
    ("no content type", AUTH, body({"text": "hi"}), 415, "unsupported_media_type"),
    (
        "gzip body",
        {**AUTH, **JSON, "Content-Encoding": "gzip"},
        gzip.compress(body({"text": "hi"})),
        415,
        "unsupported_media_type",
    ),
    (
        "gzip header on a plain body",
        {**AUTH, **JSON, "Content-Encoding": "gzip"},
        body({"text": "hi"}),
        415,
        "unsupported_media_type",
    ),
    (
        "form body",
        {**AUTH, "Content-Type": "application/x-www-form-urlencoded"},
        b"text=hi",
        415,
        "unsupported_media_type",
    ),
    ("no API key", JSON, body({"text": "hi"}), 401, "unauthorized"),
    (
        "wrong API key",
        {"Authorization": "Bearer nope", **JSON},
        body({"text": "hi"}),
        401,
        "unauthorized",
    ),
    (
        "basic auth",
        {"Authorization": "Basic YTpi", **JSON},
        body({"text": "hi"}),
        401,
        "unauthorized",
    ),
    (
        "bearer without key",
        {"Authorization": "Bearer", **JSON},
        body({"text": "hi"}),
        401,
        "unauthorized",
    ),
]


def assert_no_job_left(redis_client: redis.Redis) -> None:
    # Only the dispatcher's lease and its beat (tasks.presence) may exist.
    left = {k for k in redis_client.keys("ttsfleet:*") if not k.startswith("ttsfleet:alive:")}
    assert left <= {"ttsfleet:dispatcher:lease"}
    assert redis_client.llen("synth.piper-joe") == 0


@pytest.mark.parametrize(
    ("name", "headers", "raw", "status", "code"), CASES, ids=[c[0] for c in CASES]
)
def test_bad_submit_is_rejected_cleanly(
    api: ApiServer,
    redis_client: redis.Redis,
    name: str,
    headers: dict[str, str],
    raw: bytes,
    status: int,
    code: str,
) -> None:
    response = httpx.post(api.url + "/v1/jobs", content=raw, headers=headers, timeout=30)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    assert_no_job_left(redis_client)


@pytest.mark.parametrize(
    ("query", "code"),
    [("limit=0", "validation_error"), ("limit=501", "validation_error"), ("limit=ten", "validation_error"),
     ("status=done", "validation_error"), ("cursor=../../etc", "validation_error")],
)  # fmt: skip
def test_bad_list_query_is_422(api: ApiServer, query: str, code: str) -> None:
    with api.client() as http:
        response = http.get(f"/v1/jobs?{query}")
    assert response.status_code == 422 and response.json()["error"]["code"] == code


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/jobs/01NOSUCHJOB"), ("POST", "/v1/jobs/01NOSUCHJOB/cancel"),
     ("GET", "/v1/jobs/01NOSUCHJOB/audio"), ("GET", "/v1/jobs/" + "x" * 300), ("GET", "/v1/nothing")],
)  # fmt: skip
def test_unknown_things_are_404_json(api: ApiServer, method: str, path: str) -> None:
    with api.client() as http:
        response = http.request(method, path)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_wrong_method_is_405_json(api: ApiServer) -> None:
    with api.client() as http:
        response = http.delete("/v1/jobs")
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize("escape", ["\\udc00", "\\ud800", "\\udfff x"])
def test_lone_surrogate_escapes_are_refused_before_anything_is_stored(
    api: ApiServer, redis_client: redis.Redis, escape: str
) -> None:
    for body in (
        '{"text": "hi", "metadata": {"k": "' + escape + '"}}',
        '{"text": "hi ' + escape + '"}',
    ):
        for headers in ({**AUTH, **JSON}, {**AUTH, **JSON, "Idempotency-Key": "k-1"}):
            response = httpx.post(api.url + "/v1/jobs", content=body.encode(), headers=headers)
            assert response.status_code == 400, response.text
            assert response.json()["error"]["code"] == "invalid_json"
    assert_no_job_left(redis_client)


LONG = "A" * 5000


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", f"/v1/jobs/{LONG}"), ("POST", f"/v1/jobs/{LONG}/cancel"),
     ("GET", f"/v1/jobs/{LONG}/audio"), ("GET", f"/v1/jobs/{LONG}/audio/stream"),
     ("GET", f"/v1/jobs/{LONG}/timestamps"), ("GET", f"/v1/models/{LONG}"),
     ("GET", f"/v1/audio/{LONG}")],
)  # fmt: skip
def test_a_long_id_is_not_echoed_whole(api: ApiServer, method: str, path: str) -> None:
    with api.client() as http:
        response = http.request(method, path)
    assert response.status_code == 404
    message = response.json()["error"]["message"]
    assert "A" * 65 not in message and "A'..." in message, message


@pytest.mark.parametrize(
    ("path", "body"),
    [("/v1/jobs", {"text": "hi", "voice": LONG}),
     ("/v1/jobs/batch", {"jobs": [{"text": "hi", "voice": LONG}]}),
     ("/v1/audio/speech", {"model": "tts-1", "input": "hi", "voice": LONG})],
)  # fmt: skip
def test_a_long_voice_is_not_echoed_whole(api: ApiServer, path: str, body: Any) -> None:
    with api.client() as http:
        response = http.post(path, json=body)
    assert response.json()["error"]["code"] == "unknown_voice"
    message = response.json()["error"]["message"]
    assert "A" * 65 not in message and "A'..." in message, message


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/jobs/batch", "/v1/audio/speech"])
def test_a_compressed_body_is_refused_naming_its_coding(
    api: ApiServer, redis_client: redis.Redis, path: str
) -> None:
    job = {"text": "hi"}
    value = {"/v1/jobs": job, "/v1/jobs/batch": {"jobs": [job]}}.get(
        path, {"model": "tts-1", "voice": "alloy", "input": "hi"}
    )
    headers = {**AUTH, **JSON, "Content-Encoding": "br, gzip"}
    response = httpx.post(api.url + path, content=gzip.compress(body(value)), headers=headers)
    assert response.status_code == 415, response.text
    error = response.json()["error"]
    assert error["code"] == "unsupported_media_type" and "'br, gzip'" in error["message"]
    assert response.headers["accept-encoding"] == "identity"
    assert_no_job_left(redis_client)


def test_identity_is_no_coding(api: ApiServer) -> None:
    headers = {**AUTH, **JSON, "Content-Encoding": "identity"}
    response = httpx.post(api.url + "/v1/jobs", content=body({"text": "hi"}), headers=headers)
    assert response.status_code == 202, response.text
