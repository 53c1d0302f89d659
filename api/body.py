"""Reading a request body the way the contract wants: JSON only, size-capped, never a 500."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from api.errors import InvalidJson, PayloadTooLarge, UnsupportedMediaType

JOB_BODY_LIMIT = 64 * 1024
BATCH_BODY_LIMIT = 8 * 1024 * 1024


async def read_json(request: Request, limit: int = JOB_BODY_LIMIT) -> Any:
    """The parsed body; 415 unless JSON, 413 past `limit` bytes (read no further), 400 if
    it is not UTF-8 JSON."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType("send the body as application/json")
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
    raw = b"".join(chunks)
    try:
        parsed = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidJson(f"the body is not valid UTF-8 (byte {exc.start})") from exc
    except (json.JSONDecodeError, RecursionError) as exc:
        raise InvalidJson(f"the body is not valid JSON: {exc}") from exc
    try:
        # JSON may escape a lone surrogate ("\udc00") that no UTF-8 text can hold: refuse it
        # here, before it is stored and every later response that shows it fails to encode.
        json.dumps(parsed, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidJson("the body holds an unpaired UTF-16 surrogate escape") from exc
    return parsed
