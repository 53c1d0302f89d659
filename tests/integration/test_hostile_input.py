"""Hostile input against the real API process over HTTP (issue 13): every answer is a 4xx
JSON error with a stable code, never a 5xx; no rejected request changes the number of job
records; and the keep-alive connection the request came on still serves the next one.

The API runs as `ttsfleet api` in its own process, outside dev mode, with strong keys: one
tenant (acme) with a webhook secret, one (globex) without.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import re
import subprocess
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis

from api.body import MAX_DEPTH, StrictJsonRoute
from tests.conftest import ROOT, RedisServer, free_port, settings_env, wait_until

ACME_KEY = "acme-hostile-key-0123456789abcdef"
GLOBEX_KEY = "globex-hostile-key-0123456789abcdef"
SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()


@dataclass(frozen=True)
class Fleet:
    url: str
    port: int
    redis: redis.Redis
    acme_job: str


@pytest.fixture(scope="module")
def fleet(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    from tasks.settings import Settings

    tmp = tmp_path_factory.mktemp("hostile")
    tenants = tmp / "tenants.json"
    tenants.write_text(json.dumps({"tenants": [
        {"id": "acme", "api_keys": [ACME_KEY], "webhook_secret": SECRET},
        {"id": "globex", "api_keys": [GLOBEX_KEY]},
    ]}))  # fmt: skip
    settings = Settings(
        redis_url=redis_server.url.rsplit("/", 1)[0] + "/3",
        storage_url="file://" + str(tmp / "audio"),
        tenants_file=tenants,
        home=tmp / "home",
    )
    env = {
        **settings_env(settings),
        "TTSFLEET_DEV_MODE": "false",
        # Reads are limited per tenant; the suite's few hundred requests stay under it.
        "TTSFLEET_RATE_LIMIT_PER_S": "0",
    }
    port = free_port()
    log = tmp / "api.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fleet", "api", "--port", str(port)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    client.flushdb()
    try:
        wait_until(lambda: httpx.get(url + "/readyz").status_code == 200, timeout=30)
        job = httpx.post(
            url + "/v1/jobs",
            json={"text": "A job of acme's."},
            headers={"Authorization": f"Bearer {ACME_KEY}"},
        )
        assert job.status_code == 202, job.text
        yield Fleet(url, port, client, job.json()["id"])
    finally:
        proc.terminate()
        proc.wait(20)
        text = log.read_text()
        # A bare "500" would also match a pid such as 12500.
        assert "Traceback" not in text and not re.search(r"\b500\b", text), text[-3000:]
        client.flushdb()
        client.close()


@dataclass
class Case:
    name: str
    status: int
    code: str
    body: bytes | None = None
    method: str = "POST"
    path: str = "/v1/jobs"
    headers: dict[str, str] = field(default_factory=dict)
    key: str | None = ACME_KEY
    content_type: str | None = "application/json"


def raw(value: Any) -> bytes:
    return json.dumps(value).encode()


def job(**fields: Any) -> dict[str, Any]:
    return {"text": "Hello.", **fields}


def nested(depth: int, kind: str = "{") -> bytes:
    """`depth` levels of containers, counting the body's own object as the first."""
    inner = depth - 1
    opened, closed = (b'{"a":', b"}") if kind == "{" else (b"[", b"]")
    return b'{"text": "hi", "metadata": ' + opened * inner + b"1" + closed * inner + b"}"


INVALID = ("invalid_json", 400)
VALIDATION = ("validation_error", 422)

# Bodies refused as JSON (400 invalid_json): syntax, non-standard constants, numbers past the
# bounds, duplicate keys, depth, encodings.
JSON_BODIES: list[tuple[str, bytes]] = [
    ("empty body", b""),
    ("lone brace", b"{"),
    ("lone closing brace", b"}"),
    ("lone bracket", b"["),
    ("trailing comma", b'{"text": "hi",}'),
    ("single quotes", b"{'text': 'hi'}"),
    ("unquoted key", b'{text: "hi"}'),
    ("line comment", b'{"text": "hi"} // x'),
    ("block comment", b'{/* x */ "text": "hi"}'),
    ("trailing garbage", b'{"text": "hi"} x'),
    ("two objects", b'{"text": "hi"}{"text": "hi"}'),
    ("python True", b'{"text": "hi", "metadata": {"a": True}}'),
    ("python None", b'{"text": None}'),
    ("undefined", b'{"text": undefined}'),
    ("raw control char in string", b'{"text": "a\x01b"}'),
    ("raw newline in string", b'{"text": "a\nb"}'),
    ("invalid escape", b'{"text": "a\\xb"}'),
    ("short unicode escape", b'{"text": "\\u12"}'),
    ("leading zero", b'{"text": "hi", "deadline_s": 01}'),
    ("bare fraction", b'{"text": "hi", "speed": .5}'),
    ("dangling point", b'{"text": "hi", "speed": 1.}'),
    ("plus sign", b'{"text": "hi", "speed": +1}'),
    ("hex number", b'{"text": "hi", "deadline_s": 0x10}'),
    ("lone minus", b'{"text": "hi", "speed": -}'),
    ("NaN speed", b'{"text": "hi", "speed": NaN}'),
    ("NaN in metadata", b'{"text": "hi", "metadata": {"a": NaN}}'),
    ("Infinity in metadata", b'{"text": "hi", "metadata": {"a": Infinity}}'),
    ("-Infinity speed", b'{"text": "hi", "speed": -Infinity}'),
    ("Infinity deep in a list", b'{"text": "hi", "metadata": {"a": [1, [2, Infinity]]}}'),
    ("1e999 in metadata", b'{"text": "hi", "metadata": {"a": 1e999}}'),
    ("-1e999 speed", b'{"text": "hi", "speed": -1e999}'),
    ("1E400 exponent", b'{"text": "hi", "metadata": {"a": 1E400}}'),
    ("2^53+1", b'{"text": "hi", "metadata": {"a": 9007199254740993}}'),
    ("-(2^53+1)", b'{"text": "hi", "metadata": {"a": -9007199254740993}}'),
    ("10^20 deadline", b'{"text": "hi", "deadline_s": 100000000000000000000}'),
    ("4301-digit integer", b'{"text": "hi", "metadata": {"a": ' + b"9" * 4301 + b"}}"),
    ("5000-digit integer speed", b'{"text": "hi", "speed": ' + b"1" * 5000 + b"}"),
    ("5000-digit negative", b'{"text": "hi", "deadline_s": -' + b"1" * 5000 + b"}"),
    ("big integer in a list", b'{"text": "hi", "metadata": {"a": [1, 2, ' + b"7" * 30 + b"]}}"),
    ("big sample rate", b'{"text": "hi", "sample_rate": 220500000000000000000}'),
    ("duplicate text", b'{"text": "hi", "text": "there"}'),
    ("duplicate speed", b'{"text": "hi", "speed": 1, "speed": 2}'),
    ("duplicate in metadata", b'{"text": "hi", "metadata": {"a": 1, "a": 1}}'),
    ("duplicate empty keys", b'{"text": "hi", "metadata": {"": 1, "": 2}}'),
    ("duplicate deep", b'{"text": "hi", "metadata": {"a": [{"b": 1, "b": 2}]}}'),
    ("escaped duplicate key", b'{"text": "hi", "t\\u0065xt": "x"}'),
    ("depth 33 objects", nested(MAX_DEPTH + 1)),
    ("depth 33 arrays", nested(MAX_DEPTH + 1, "[")),
    ("depth 40", nested(40)),
    ("depth 255", nested(255)),
    ("depth 500", nested(500)),
    ("depth 990", nested(990, "[")),
    ("depth 5000", nested(5000)),
    ("top-level arrays 33 deep", b"[" * 33 + b"]" * 33),
    ("lone high surrogate", b'{"text": "\\ud800"}'),
    ("lone low surrogate", b'{"text": "\\udfff"}'),
    ("reversed surrogate pair", b'{"text": "\\udc00\\ud800"}'),
    ("surrogate in metadata key", b'{"text": "hi", "metadata": {"\\ud83d": 1}}'),
    ("invalid UTF-8 byte", b'{"text": "\xff"}'),
    ("overlong UTF-8", b'{"text": "\xc0\xaf"}'),
    ("truncated UTF-8", b'{"text": "\xe2\x82"}'),
    ("UTF-8 encoded surrogate", b'{"text": "\xed\xa0\x80"}'),
    ("UTF-16 body", '{"text": "hi"}'.encode("utf-16")),
    ("UTF-8 BOM", b'\xef\xbb\xbf{"text": "hi"}'),
    ("NUL bytes", b"\x00" * 64),
    ("raw NUL in string", b'{"text": "a\x00b"}'),
]

# Well-formed JSON the job model refuses (422 validation_error): wrong types, booleans for
# numbers, out-of-range values, fields a client must not set.
VALIDATION_BODIES: list[tuple[str, Any]] = [
    ("body is an array", [job()]),
    ("body is a string", "hello"),
    ("body is a number", 42),
    ("body is null", None),
    ("body is true", True),
    ("empty object", {}),
    ("text is a number", {"text": 1}),
    ("text is true", {"text": True}),
    ("text is a list", {"text": ["hi"]}),
    ("text is an object", {"text": {"a": "hi"}}),
    ("text is empty", {"text": ""}),
    ("text is spaces", {"text": " \t\n "}),
    ("text escapes NUL", {"text": "a\u0000b"}),
    ("text too long", {"text": "a" * 1_000_001}),
    ("speed true", job(speed=True)),
    ("speed false", job(speed=False)),
    ("speed is a string", job(speed="1.0")),
    ("speed zero", job(speed=0)),
    ("speed negative", job(speed=-1)),
    ("speed huge", job(speed=1e300)),
    ("deadline true", job(deadline_s=True)),
    ("deadline false", job(deadline_s=False)),
    ("deadline fractional", job(deadline_s=1.5)),
    ("deadline float", job(deadline_s=10.0)),
    ("deadline string", job(deadline_s="10")),
    ("deadline zero", job(deadline_s=0)),
    ("deadline past a week", job(deadline_s=604801)),
    ("sample rate true", job(sample_rate=True)),
    ("sample rate string", job(sample_rate="22050")),
    ("sample rate off the list", job(sample_rate=22051)),
    ("priority number", job(priority=1)),
    ("priority unknown", job(priority="urgent")),
    ("priority upper case", job(priority="HIGH")),
    ("format upper case", job(format="WAV")),
    ("format exe", job(format="exe")),
    ("format number", job(format=1)),
    ("voice number", job(voice=123)),
    ("metadata list", job(metadata=[1, 2])),
    ("metadata string", job(metadata="x")),
    ("metadata number", job(metadata=7)),
    ("metadata over 16 KiB", job(metadata={"a": "x" * 17000})),
    ("callback url number", job(callback_url=123)),
    ("callback url ftp", job(callback_url="ftp://example.com/x")),
    ("callback url javascript", job(callback_url="javascript:alert(1)")),
    ("callback url relative", job(callback_url="/hook")),
    ("callback url no host", job(callback_url="http://")),
    ("unknown field", job(colour="red")),
    ("field case", {"Text": "hi"}),
    ("sets its id", job(id="01HZZZZZZZZZZZZZZZZZZZZZZZ")),
    ("sets its status", job(status="succeeded")),
    ("sets its tenant", job(tenant="globex")),
    ("sets its audio", job(audio={"url": "http://evil.example/x"})),
    ("sets its storage key", job(storage_key="../../etc/passwd")),
    ("__proto__", job(__proto__={"admin": True})),
]

CASES: list[Case] = [Case(f"json: {n}", 400, "invalid_json", body=b) for n, b in JSON_BODIES]
# The same JSON refusals on the batch route, the body wrapped as an item where that parses.
CASES += [
    Case(f"batch json: {n}", 400, "invalid_json", body=b'{"jobs": [' + b + b"]}", path="/v1/jobs/batch")
    for n, b in JSON_BODIES
    if n not in ("empty body", "UTF-16 body", "UTF-8 BOM", "NUL bytes", "two objects")
    and not n.startswith("depth")
]  # fmt: skip
CASES += [Case(f"model: {n}", 422, "validation_error", body=raw(v)) for n, v in VALIDATION_BODIES]
CASES += [
    Case(f"batch model: {n}", 422, "validation_error", body=raw({"jobs": [job(), v]}),
         path="/v1/jobs/batch")
    for n, v in VALIDATION_BODIES
    if isinstance(v, dict) and v
]  # fmt: skip
CASES += [
    Case("batch: not an object", 422, "validation_error", body=raw([job()]), path="/v1/jobs/batch"),
    Case("batch: jobs not a list", 422, "validation_error", body=raw({"jobs": job()}),
         path="/v1/jobs/batch"),
    Case("batch: empty", 422, "validation_error", body=raw({"jobs": []}), path="/v1/jobs/batch"),
    Case("batch: 1001 jobs", 422, "validation_error", body=raw({"jobs": [job()] * 1001}),
         path="/v1/jobs/batch"),
    Case("batch: extra key", 422, "validation_error", body=raw({"jobs": [job()], "x": 1}),
         path="/v1/jobs/batch"),
    Case("batch: unknown voice", 422, "unknown_voice", body=raw({"jobs": [job(voice="nobody")]}),
         path="/v1/jobs/batch"),
    # Semantics the schema cannot say.
    Case("unknown voice", 422, "unknown_voice", body=raw(job(voice="xx_XX-nobody"))),
    Case("voice path traversal", 422, "unknown_voice", body=raw(job(voice="../../etc/passwd"))),
    Case("callback to loopback", 422, "callback_url_forbidden",
         body=raw(job(callback_url="http://127.0.0.1:9/hook"))),
    Case("callback to metadata address", 422, "callback_url_forbidden",
         body=raw(job(callback_url="http://169.254.169.254/latest/meta-data/"))),
    Case("callback to IPv6 loopback", 422, "callback_url_forbidden",
         body=raw(job(callback_url="http://[::1]:8080/"))),
    Case("callback to localhost", 422, "callback_url_forbidden",
         body=raw(job(callback_url="http://localhost/hook"))),
    Case("callback to a private network", 422, "callback_url_forbidden",
         body=raw(job(callback_url="http://10.0.0.1/hook"))),
    Case("callback to decimal loopback", 422, "callback_url_forbidden",
         body=raw(job(callback_url="http://2130706433/hook"))),
    Case("callback without a secret", 422, "callback_secret_missing",
         body=raw(job(callback_url="https://example.com/hook")), key=GLOBEX_KEY),
    Case("batch callback without a secret", 422, "callback_secret_missing",
         body=raw({"jobs": [job(callback_url="https://example.com/hook")]}),
         path="/v1/jobs/batch", key=GLOBEX_KEY),
    # Sizes.
    Case("body past 4 MiB", 413, "payload_too_large",
         body=raw(job(text="a" * (4 * 1024 * 1024)))),
    Case("declared past 4 MiB", 413, "payload_too_large", body=raw(job()),
         headers={"Content-Length-Override": "999999999"}),
    # Media types.
    Case("no content type", 415, "unsupported_media_type", body=raw(job()), content_type=None),
    Case("text/plain", 415, "unsupported_media_type", body=raw(job()), content_type="text/plain"),
    Case("form", 415, "unsupported_media_type", body=b"text=hi",
         content_type="application/x-www-form-urlencoded"),
    Case("multipart", 415, "unsupported_media_type", body=b"--x--",
         content_type="multipart/form-data; boundary=x"),
    Case("xml", 415, "unsupported_media_type", body=b"<text>hi</text>",
         content_type="application/xml"),
    Case("batch text/plain", 415, "unsupported_media_type", body=raw({"jobs": [job()]}),
         content_type="text/plain", path="/v1/jobs/batch"),
    # Content codings: never decoded, never read as if plain.
    Case("gzip", 415, "unsupported_media_type", body=gzip.compress(raw(job())),
         headers={"Content-Encoding": "gzip"}),
    Case("GZIP upper case", 415, "unsupported_media_type", body=gzip.compress(raw(job())),
         headers={"Content-Encoding": "GZIP"}),
    Case("gzip named on a plain body", 415, "unsupported_media_type", body=raw(job()),
         headers={"Content-Encoding": "gzip"}),
    Case("deflate", 415, "unsupported_media_type", body=zlib.compress(raw(job())),
         headers={"Content-Encoding": "deflate"}),
    Case("br", 415, "unsupported_media_type", body=raw(job()), headers={"Content-Encoding": "br"}),
    Case("identity then gzip", 415, "unsupported_media_type", body=gzip.compress(raw(job())),
         headers={"Content-Encoding": "identity, gzip"}),
    Case("unknown coding", 415, "unsupported_media_type", body=raw(job()),
         headers={"Content-Encoding": "x" * 5000}),
    Case("batch gzip", 415, "unsupported_media_type", body=gzip.compress(raw({"jobs": [job()]})),
         headers={"Content-Encoding": "gzip"}, path="/v1/jobs/batch"),
    Case("speech gzip", 415, "unsupported_media_type",
         body=gzip.compress(raw({"model": "tts-1", "voice": "alloy", "input": "Hi."})),
         headers={"Content-Encoding": "gzip"}, path="/v1/audio/speech"),
    # Idempotency-Key.
    Case("idempotency key too long", 422, "validation_error", body=raw(job()),
         headers={"Idempotency-Key": "k" * 256}),
    # Authentication.
    Case("no key", 401, "unauthorized", body=raw(job()), key=None),
    Case("wrong key", 401, "unauthorized", body=raw(job()), key="not-a-key-of-anyone-at-all"),
    Case("basic auth", 401, "unauthorized", body=raw(job()), key=None,
         headers={"Authorization": "Basic YWNtZTprZXk="}),
    Case("bearer without key", 401, "unauthorized", body=raw(job()), key=None,
         headers={"Authorization": "Bearer "}),
    Case("two keys", 401, "unauthorized", body=raw(job()), key=None,
         headers={"Authorization": f"Bearer {ACME_KEY} {GLOBEX_KEY}"}),
    Case("key with a suffix", 401, "unauthorized", body=raw(job()), key=ACME_KEY + "x"),
    Case("key prefix", 401, "unauthorized", body=raw(job()), key=ACME_KEY[:-1]),
    Case("huge key", 401, "unauthorized", body=raw(job()), key="k" * 6000),
    Case("token scheme", 401, "unauthorized", body=raw(job()), key=None,
         headers={"Authorization": f"Token {ACME_KEY}"}),
    Case("no key on a read", 401, "unauthorized", method="GET", path="/v1/jobs", key=None),
    Case("no key on voices", 401, "unauthorized", method="GET", path="/v1/voices", key=None),
    # Paths, queries, methods: never a redirect, never another tenant's job.
    Case("encoded slash id", 404, "not_found", method="GET", path="/v1/jobs/%2F",
         headers={"Host": "evil.example"}),
    Case("trailing slash", 404, "not_found", method="GET", path="/v1/jobs/",
         headers={"Host": "evil.example"}),
    Case("trailing slash on submit", 404, "not_found", path="/v1/jobs/", body=raw(job())),
    Case("double slash", 404, "not_found", method="GET", path="/v1//jobs"),
    Case("dot segments", 404, "not_found", method="GET", path="/v1/jobs/..%2F..%2Fetc%2Fpasswd"),
    Case("id of 10000 chars", 404, "not_found", method="GET", path="/v1/jobs/" + "A" * 10000),
    Case("id with NUL", 404, "not_found", method="GET", path="/v1/jobs/%00"),
    Case("id in unicode", 404, "not_found", method="GET", path="/v1/jobs/%C3%A9%E2%82%AC"),
    Case("id as a key pattern", 404, "not_found", method="GET", path="/v1/jobs/*"),
    Case("cancel of nothing", 404, "not_found", path="/v1/jobs/nothing/cancel", body=None),
    Case("audio of nothing", 404, "not_found", method="GET", path="/v1/jobs/nothing/audio"),
    Case("limit 0", 422, "validation_error", method="GET", path="/v1/jobs?limit=0"),
    Case("limit 501", 422, "validation_error", method="GET", path="/v1/jobs?limit=501"),
    Case("limit negative", 422, "validation_error", method="GET", path="/v1/jobs?limit=-1"),
    Case("limit word", 422, "validation_error", method="GET", path="/v1/jobs?limit=abc"),
    Case("limit exponent", 422, "validation_error", method="GET", path="/v1/jobs?limit=1e3"),
    Case("limit huge", 422, "validation_error", method="GET", path="/v1/jobs?limit=" + "9" * 5000),
    Case("empty cursor", 422, "validation_error", method="GET", path="/v1/jobs?cursor="),
    Case("cursor garbage", 422, "validation_error", method="GET", path="/v1/jobs?cursor=abc"),
    Case("cursor lower case", 422, "validation_error", method="GET",
         path="/v1/jobs?cursor=" + "0" * 25 + "i"),
    Case("status unknown", 422, "validation_error", method="GET", path="/v1/jobs?status=done"),
    Case("status upper case", 422, "validation_error", method="GET", path="/v1/jobs?status=QUEUED"),
    Case("put jobs", 405, "method_not_allowed", method="PUT", path="/v1/jobs", body=raw(job())),
    Case("delete a job", 405, "method_not_allowed", method="DELETE", path="/v1/jobs/x"),
    Case("patch voices", 405, "method_not_allowed", method="PATCH", path="/v1/voices", body=b"{}"),
    Case("no such route", 404, "not_found", method="GET", path="/v2/jobs"),
    Case("redoc is gone", 404, "not_found", method="GET", path="/redoc", key=None),
]  # fmt: skip


def speech(**fields: Any) -> dict[str, Any]:
    return {"model": "tts-1", "voice": "alloy", "input": "Hello.", **fields}


# OpenAI's speech route answers 400, in OpenAI's shape; a stream_format it does not serve
# (sse) has its own code, any other value is a validation error.
CASES += [
    Case(f"speech stream_format {n}", 400, code, body=raw(speech(stream_format=v)),
         path="/v1/audio/speech")
    for n, v, code in [
        ("sse", "sse", "unsupported_stream_format"),
        ("bogus", "bogus", "validation_error"),
        ("upper case", "AUDIO", "validation_error"),
        ("empty", "", "validation_error"),
        ("number", 1, "validation_error"),
        ("list", ["audio"], "validation_error"),
        ("object", {"type": "audio"}, "validation_error"),
    ]
]  # fmt: skip


def _jobs(client: redis.Redis) -> int:
    return sum(1 for _ in client.scan_iter("ttsfleet:job:*", count=1000))


def _send(fleet: Fleet, case: Case) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", fleet.port, timeout=30)
    headers = dict(case.headers)
    if case.key is not None:
        headers["Authorization"] = f"Bearer {case.key}"
    if case.content_type is not None:
        headers["Content-Type"] = case.content_type
    declared = headers.pop("Content-Length-Override", None)
    body = case.body if case.body is not None else b""
    conn.putrequest(case.method, case.path, skip_host="Host" in headers)
    for name, value in headers.items():
        conn.putheader(name, value)
    conn.putheader("Content-Length", declared or str(len(body)))
    conn.endheaders(body if declared is None else None)
    return conn, conn.getresponse()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_request_gets_a_clean_4xx(fleet: Fleet, case: Case) -> None:
    before = _jobs(fleet.redis)
    conn, response = _send(fleet, case)
    try:
        data = response.read()
        assert response.status == case.status, data[:500]
        assert response.getheader("content-type") == "application/json"
        assert json.loads(data)["error"]["code"] == case.code
        # No redirect anywhere, so no URL built from the request's Host.
        assert response.getheader("location") is None
        if case.status == 429:
            assert response.getheader("retry-after")
        if case.status == 413:
            return  # a body refused unread is not waited for: the server may close (RFC 9112)
        # The keep-alive connection survives: the next request on it is served.
        sock = conn.sock
        conn.request("GET", "/healthz")
        follow = conn.getresponse()
        assert follow.status == 200 and follow.read() == b'{"status":"ok"}'
        assert conn.sock is sock
    finally:
        conn.close()
    assert _jobs(fleet.redis) == before


def test_the_suite_holds_enough_cases() -> None:
    assert len(CASES) >= 150


def test_another_tenants_job_does_not_exist(fleet: Fleet) -> None:
    before = _jobs(fleet.redis)
    for method, path in (
        ("GET", f"/v1/jobs/{fleet.acme_job}"),
        ("GET", f"/v1/jobs/{fleet.acme_job}/audio"),
        ("POST", f"/v1/jobs/{fleet.acme_job}/cancel"),
    ):
        response = httpx.request(
            method, fleet.url + path, headers={"Authorization": f"Bearer {GLOBEX_KEY}"}
        )
        assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found")
    listed = httpx.get(fleet.url + "/v1/jobs", headers={"Authorization": f"Bearer {GLOBEX_KEY}"})
    assert listed.json()["jobs"] == []
    assert _jobs(fleet.redis) == before


def test_depth_and_integer_bounds_are_inclusive(fleet: Fleet) -> None:
    """The limits are the documented ones, not lower: 32 levels and ±2^53 are accepted."""
    headers = {"Authorization": f"Bearer {ACME_KEY}", "Content-Type": "application/json"}
    deep = nested(MAX_DEPTH)
    big = raw(job(metadata={"n": 2**53, "m": -(2**53), "f": 1.5e300}))
    for body in (deep, big):
        response = httpx.post(fleet.url + "/v1/jobs", content=body, headers=headers)
        assert response.status_code == 202, response.text


def test_every_route_with_a_body_parses_it_strictly() -> None:
    """A route that lets FastAPI parse its body (the OpenAI-compatible ones) must be a
    StrictJsonRoute, or the bounds above would not hold there (tests/unit/test_body.py
    shows what the route class does)."""
    from fastapi.routing import APIRoute

    from api.app import create_app
    from tasks.settings import Settings

    app = create_app(Settings(api_keys="t:k", redis_url="redis://127.0.0.1:1/0"))
    routes: list[Any] = []
    pending: list[Any] = list(app.routes)
    while pending:
        route = pending.pop()
        inner = getattr(route, "original_router", None)  # FastAPI's included router
        pending += inner.routes if inner is not None else []
        routes.append(route)
    api_routes = [r for r in routes if isinstance(r, APIRoute)]
    posts = [r for r in api_routes if r.body_field is not None or "POST" in (r.methods or ())]
    assert {"/v1/jobs", "/v1/jobs/batch"} <= {r.path for r in posts}
    assert [r.path for r in posts if not isinstance(r, StrictJsonRoute)] == []


def test_openapi_and_docs_need_no_network(fleet: Fleet) -> None:
    page = httpx.get(fleet.url + "/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        got = httpx.get(f"{fleet.url}/docs-assets/{asset}")
        assert got.status_code == 200 and len(got.content) > 10000
