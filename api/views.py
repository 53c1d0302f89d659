"""What a client sees of a job, read straight from its stored record.

A status poll is the API's most frequent request. Building a `Job` (pydantic validation)
from the hash and dumping it again (`Job.public`) cost as much as the rest of the poll
(bench.api's profile); the record is written by our own scripts from a validated `Job`,
so the public fields are its JSON values as they are, with the model's defaults for any
field a record lacks. tests/integration/test_views.py holds this equal to `Job.public()` at
every stage of a job's life.
"""

from __future__ import annotations

from typing import Any

import orjson

from tasks.jobs import Job

# Job._PUBLIC, a pydantic private attribute: read its value from the class.
_PUBLIC: tuple[str, ...] = tuple(Job.__private_attributes__["_PUBLIC"].get_default())
# The record's fields a view is made of.
VIEW_FIELDS = _PUBLIC
_DEFAULTS = {
    name: Job.model_fields[name].get_default(call_default_factory=True) for name in _PUBLIC
}


def public_view(raw: dict[str, str], tenant: str) -> dict[str, Any] | None:
    """`Job.public()` of the record `raw` (its `VIEW_FIELDS`, `tenant` and `parent` at
    least) if it exists and is `tenant`'s; None otherwise (another tenant's job does not
    exist, nor does a unit of a long job, tasks.units)."""
    status = raw.get("status")
    if not status or "parent" in raw or orjson.loads(raw.get("tenant", "null")) != tenant:
        return None
    view: dict[str, Any] = {}
    for name in _PUBLIC:
        value = raw.get(name)
        if name == "status":
            view[name] = status
        elif name == "attempts":  # stored as a number, not JSON (Lua increments it)
            view[name] = int(value or 0)
        else:
            view[name] = _DEFAULTS[name] if value is None else orjson.loads(value)
    return view


def encode(body: Any) -> bytes:
    """A JSON response body (orjson: a twentieth of JSONResponse's json.dumps on a job)."""
    return orjson.dumps(body)
