"""The strict JSON parser (api.body) and the route class that puts it on FastAPI's own
body parsing."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from api import errors
from api.body import MAX_DEPTH, MAX_SAFE_INTEGER, StrictJsonRoute, parse_json
from api.errors import InvalidJson


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": 1, "a": 2}',
        b"NaN",
        b"[Infinity]",
        b"-Infinity",
        b"1e999",
        b"9" * 4301,
        str(MAX_SAFE_INTEGER + 1).encode(),
        str(-MAX_SAFE_INTEGER - 1).encode(),
        b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1),
        b'"\\ud800"',
        b"\xff",
        b"[" * 100000,
    ],
)
def test_refused(raw: bytes) -> None:
    with pytest.raises(InvalidJson):
        parse_json(raw)


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (str(MAX_SAFE_INTEGER).encode(), MAX_SAFE_INTEGER),
        (str(-MAX_SAFE_INTEGER).encode(), -MAX_SAFE_INTEGER),
        (b"[" * MAX_DEPTH + b"]" * MAX_DEPTH, None),
        (b'"\\ud83d\\ude00"', "\U0001f600"),
        (b'{"a": 1.5, "b": [1, {}], "c": null, "d": true}', None),
        (b'{"a": "[[[[{{{{" }', {"a": "[[[[{{{{"}),  # brackets in strings are not depth
    ],
)
def test_accepted(raw: bytes, value: Any) -> None:
    parsed = parse_json(raw)
    if value is not None:
        assert parsed == value


class Body(BaseModel):
    # A boolean is not a number: a route's model says so with strict (pydantic would take
    # `true` as 1), as tasks.jobs.JobRequest does.
    n: int = Field(strict=True)


def strict_app() -> TestClient:
    router = APIRouter(prefix="/x", route_class=StrictJsonRoute)

    @router.post("/body")
    async def take(body: Body) -> dict[str, int]:
        return {"n": body.n}

    app = FastAPI()
    errors.install(app)
    app.include_router(router)
    return TestClient(app)


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b'{"n": 1, "n": 2}', 400, "invalid_json"),
        (b'{"n": ' + b"9" * 5000 + b"}", 400, "invalid_json"),
        (b'{"n": NaN}', 400, "invalid_json"),
        (b'{"n": ' + b"1" * (4 * 1024 * 1024) + b"}", 413, "payload_too_large"),
        (b'{"n": true}', 422, "validation_error"),
    ],
)
def test_a_strict_route_refuses_what_fastapi_would_parse(
    raw: bytes, status: int, code: str
) -> None:
    with strict_app() as client:
        response = client.post("/x/body", content=raw, headers={"content-type": "application/json"})
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)


def test_a_strict_route_still_serves_good_bodies() -> None:
    with strict_app() as client:
        response = client.post("/x/body", json={"n": 3})
    assert response.json() == {"n": 3}
