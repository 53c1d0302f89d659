"""Reading a request body the way the contract wants: JSON only, uncompressed, size-capped,
strict, never a 500.

`parse_json` is the one strict JSON parser of the API (DESIGN §4, "strict parsing on every
route"): nesting at most `MAX_DEPTH` levels, integers within ±2^53 (what every JSON reader
holds exactly), no `NaN`/`Infinity`, no duplicate keys, no unpaired surrogate escapes; any
of these is 400 `invalid_json`. Routes that read their body by hand call `read_json`;
routes that let FastAPI parse a pydantic body get the same parser by being a
`StrictJsonRoute` (`APIRouter(route_class=StrictJsonRoute)`); the test
`tests/integration/test_hostile_input.py` checks that every body-taking route is one.

The checks ride on `json.loads`'s own hooks (the C scanner stays in charge), and the two
that need a second look at the data run only when the raw bytes say they might matter: the
depth walk only past `MAX_DEPTH` brackets, the surrogate check only when a `\\ud` escape is
there. bench/body.py measures what it costs per request.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.routing import APIRoute
from starlette.responses import Response

from api.errors import InvalidJson, PayloadTooLarge, UnsupportedMediaType, shown

# One job's body: a book of `max_document_chars` fits (tasks.units).
JOB_BODY_LIMIT = 4 * 1024 * 1024
BATCH_BODY_LIMIT = 8 * 1024 * 1024
MAX_DEPTH = 32
MAX_SAFE_INTEGER = 2**53
# "-9007199254740992" is 17 characters: a longer digit string is out of range, so `int()`
# (and its 4,300-digit ValueError) never sees one.
_MAX_INT_CHARS = 17
_SURROGATE_ESCAPE = re.compile(rb"\\[uU][dD][89a-fA-F]")


class _Refused(ValueError):
    """A JSON text the strict parser refuses, though `json` would take it."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(f"duplicate key {shown(key)}")
            seen.add(key)
    return obj


def _integer(text: str) -> int:
    value = int(text) if len(text) <= _MAX_INT_CHARS else MAX_SAFE_INTEGER + 1
    if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        raise _Refused(f"integer {text[:24]}{'...' if len(text) > 24 else ''} is outside ±2^53")
    return value


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"number {text[:24]} is out of range")
    return value


def _constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON value")


def _too_deep(value: Any) -> bool:
    """True if `value` nests containers more than MAX_DEPTH levels (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


_decoder = json.JSONDecoder(
    object_pairs_hook=_object, parse_int=_integer, parse_float=_float, parse_constant=_constant
)


def parse_json(raw: bytes) -> Any:
    """The strictly parsed JSON text `raw`; 400 `invalid_json` for anything else."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidJson(f"the body is not valid UTF-8 (byte {exc.start})") from exc
    try:
        parsed = _decoder.decode(text)
    except _Refused as exc:
        raise InvalidJson(f"the body is not accepted JSON: {exc}") from exc
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise InvalidJson(f"the body is not valid JSON: {exc}") from exc
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _too_deep(parsed):
        raise InvalidJson(f"the body nests deeper than {MAX_DEPTH} levels")
    if _SURROGATE_ESCAPE.search(raw):
        try:
            # JSON may escape a lone surrogate ("\udc00") that no UTF-8 text can hold: refuse
            # it here, before it is stored and every later response that shows it fails.
            json.dumps(parsed, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidJson("the body holds an unpaired UTF-16 surrogate escape") from exc
    return parsed


def _is_json(request: Request) -> bool:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _check_media_type(request: Request) -> None:
    if not _is_json(request):
        raise UnsupportedMediaType("send the body as application/json")


def _check_encoding(request: Request) -> None:
    """415 for a body in a content coding (gzip, br, ...): it is not decoded here, and read
    as it is it would be parsed as the wrong bytes; decoded, it could pass the body limits
    many times over (a zip bomb). Only `identity` (no coding) is accepted (RFC 9110 15.5.16:
    the answer says so in Accept-Encoding)."""
    codings = ",".join(request.headers.getlist("content-encoding"))
    refused = [c.strip() for c in codings.split(",") if c.strip().lower() not in ("", "identity")]
    if refused:
        raise UnsupportedMediaType(
            f"Content-Encoding {shown(', '.join(refused))} is not accepted: send the body "
            "uncompressed (identity)",
            {"Accept-Encoding": "identity"},
        )


async def read_limited(request: Request, limit: int) -> bytes:
    """The raw body; 415 in a content coding, 413 past `limit` bytes (by Content-Length, or
    reading no further)."""
    _check_encoding(request)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int = JOB_BODY_LIMIT) -> Any:
    """The parsed body; 415 unless uncompressed JSON, 413 past `limit` bytes (read no
    further), 400 if it is not strict UTF-8 JSON (`parse_json`)."""
    _check_media_type(request)
    return parse_json(await read_limited(request, limit))


class StrictRequest(Request):
    """A request whose body is size-capped and whose `.json()` is `parse_json`: what
    FastAPI calls to read and parse a pydantic body."""

    body_limit = JOB_BODY_LIMIT

    async def body(self) -> bytes:
        if not hasattr(self, "_body"):
            self._body = await read_limited(self, self.body_limit)
        return self._body

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json(await self.body())
        return self._json


class StrictJsonRoute(APIRoute):
    """A route whose FastAPI-parsed JSON body goes through `parse_json` and a body limit;
    use it as `APIRouter(route_class=StrictJsonRoute)` for any route with a body.

    The body is parsed before FastAPI's handler runs, so a refusal is our 400/413 (FastAPI
    turns a parser's exception into a bare 400), and FastAPI then reads the cached value."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        takes_body = self.body_field is not None

        async def strict(request: Request) -> Response:
            strict_request = StrictRequest(request.scope, request.receive)
            if takes_body and _is_json(strict_request):
                await strict_request.json()
            return await handler(strict_request)

        return strict
