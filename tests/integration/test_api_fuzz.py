"""Bad input at scale: schemathesis against /openapi.json, hostile bodies, a flood of
concurrent submits. No 5xx, no response outside the schema, nothing half-made."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tasks.settings import Settings
from tests.conftest import API_KEYS, ROOT, ApiServer, free_port, settings_env, wait_until


@pytest.fixture
def open_api(
    start_api: Callable[..., ApiServer],
    make_settings: Callable[..., Settings],
    redis_client: redis.Redis,
    tmp_path: Path,
) -> ApiServer:
    # No rate limits: the fuzzer would mostly read 429s. A tenant with a webhook secret, so
    # a callback_url is not refused for the want of one.
    tenants = tmp_path / "tenants.json"
    secret = "whsec_" + base64.b64encode(b"f" * 32).decode()
    tenants.write_text(json.dumps({"tenants": [
        {"id": "acme", "api_keys": [API_KEYS["acme"]], "webhook_secret": secret}
    ]}))  # fmt: skip
    return start_api(
        make_settings(
            rate_limit_per_s=0, read_rate_limit_per_s=0, api_keys=None, tenants_file=tenants
        )
    )


def test_schemathesis_finds_no_failure_with_every_check(open_api: ApiServer) -> None:
    """`--checks all`; what the schema cannot say is widened in schemathesis.toml, each
    with its reason."""
    result = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "--config-file", str(ROOT / "schemathesis.toml"),
         "run", open_api.url + "/openapi.json",
         "-H", f"Authorization: Bearer {API_KEYS['acme']}",
         "-c", "all", "-n", "25", "--generation-deterministic", "--request-timeout", "20"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout.split("SUMMARY")[-1]


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b'{"text": "a\x00b"}', 400, "invalid_json"),  # a raw NUL is not JSON
        (b"\x00" * 100, 400, "invalid_json"),
        (b'{"text": "' + b"\xc3\x28" * 10 + b'"}', 400, "invalid_json"),
        (
            b'{"text": "hi", "metadata": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}",
            400,
            "invalid_json",
        ),
        (b'{"text": "' + b"x" * (4 << 20) + b'"}', 413, "payload_too_large"),
    ],
    ids=["raw NUL in a string", "NUL bytes", "invalid UTF-8", "nested 5000 deep", "4 MiB body"],
)
def test_hostile_bodies_get_clean_answers(
    open_api: ApiServer, redis_client: redis.Redis, raw: bytes, status: int, code: str
) -> None:
    response = httpx.post(
        open_api.url + "/v1/jobs",
        content=raw,
        headers={"Authorization": f"Bearer {API_KEYS['acme']}", "Content-Type": "application/json"},
    )
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    assert redis_client.keys("ttsfleet:job:*") == []


async def flood(url: str, count: int, connections: int) -> Counter[int]:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    headers = {"Authorization": f"Bearer {API_KEYS['acme']}"}
    # httpx's pool slows down badly with thousands of requests queued on it: a semaphore
    # keeps exactly `connections` in flight.
    gate = asyncio.Semaphore(connections)

    async def submit(http: httpx.AsyncClient, i: int) -> httpx.Response:
        async with gate:
            return await http.post("/v1/jobs", json={"text": f"Flood line {i}."})

    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=120) as http:
        responses = await asyncio.gather(*(submit(http, i) for i in range(count)))
    for response in responses:
        assert response.headers["content-type"] == "application/json"
        if response.status_code != 202:
            assert response.json()["error"]["code"] in ("quota_exceeded", "rate_limited")
    return Counter(r.status_code for r in responses)


@pytest.fixture
def api_process(make_settings: Callable[..., Settings], redis_client: redis.Redis) -> Iterator[str]:
    """`ttsfleet api` in its own process: the flood must not share a GIL with the server."""
    settings = make_settings(rate_limit_per_s=0)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleet", "api", "--port", str(port)],
        cwd=ROOT, env={**settings_env(settings), "TTSFLEET_RATE_LIMIT_PER_S": "0"}, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(url + "/readyz").status_code == 200, timeout=30)
        yield url
    finally:
        proc.terminate()
        proc.wait(20)


def run_flood(url: str, redis_client: redis.Redis, count: int) -> None:
    statuses = asyncio.run(flood(url, count, connections=200))
    print(f"{count} concurrent submits: {dict(statuses)}")
    assert set(statuses) <= {202, 429}
    accepted = statuses[202]
    # Every 202 is a whole job in the store, and nothing else is.
    assert len(redis_client.keys("ttsfleet:job:*")) == accepted > 0


def test_two_thousand_concurrent_submits_get_clean_answers(
    api_process: str, redis_client: redis.Redis
) -> None:
    run_flood(api_process, redis_client, 2000)


@pytest.mark.slow
def test_ten_thousand_concurrent_submits_get_clean_answers(
    api_process: str, redis_client: redis.Redis
) -> None:
    run_flood(api_process, redis_client, 10000)


def test_openapi_document_is_valid_json_with_every_path(open_api: ApiServer) -> None:
    spec = json.loads(httpx.get(open_api.url + "/openapi.json").text)
    assert spec["openapi"].startswith("3.")
    assert {"/v1/jobs", "/v1/jobs/batch"} <= set(spec["paths"])
