"""Log lines that say which job, tenant, worker and batch they concern.

`bound(job_id=..., tenant=...)` puts fields in a context variable for the lines logged
inside it. Context variables follow a call, not a thread: the batcher thread runs items
that many task threads handed it, so it never sees their context. `current()` captures a
caller's fields and the batcher binds them (with its `batch_id`) explicitly.

`TTSFLEET_LOG_FORMAT=json` writes one JSON object per line (for Loki, Cloud Logging, ...);
`text` stays readable in a terminal and appends the same fields.
"""

from __future__ import annotations

import json
import logging
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

_NONE: Mapping[str, Any] = MappingProxyType({})
_context: ContextVar[Mapping[str, Any]] = ContextVar("ttsfleet_log_context", default=_NONE)


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Add `fields` (None values are left out) to every line logged inside the block."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def current() -> dict[str, Any]:
    """The fields bound here, to hand to another thread."""
    return dict(_context.get())


def batch_fields(contexts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Fields for the lines of one batch: a fresh `batch_id` and the ids of its jobs."""
    # A long text's pieces are several items of one job: name it once.
    job_ids = list(dict.fromkeys(c["job_id"] for c in contexts if "job_id" in c))
    fields: dict[str, Any] = {"batch_id": uuid.uuid4().hex[:12], "job_ids": job_ids}
    if len(job_ids) == 1:
        fields["job_id"] = job_ids[0]
    tenants = {c["tenant"] for c in contexts if "tenant" in c}
    if len(tenants) == 1:
        fields["tenant"] = tenants.pop()
    return fields


class ContextFilter(logging.Filter):
    """Copies the bound fields onto each record; Celery's own task lines carry the task id,
    which is our job id."""

    def __init__(self, static: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self._static = dict(static or {})

    def filter(self, record: logging.LogRecord) -> bool:
        fields = {**self._static, **_context.get()}
        data = getattr(record, "data", None)
        if "job_id" not in fields and isinstance(data, Mapping) and isinstance(data.get("id"), str):
            fields["job_id"] = data["id"]
        record.ttsfleet = fields
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the bound fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        line.update(getattr(record, "ttsfleet", {}))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("[%(asctime)s: %(levelname)s/%(processName)s] %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields: Mapping[str, Any] = getattr(record, "ttsfleet", {})
        if fields:
            text += " [" + " ".join(f"{k}={v}" for k, v in fields.items()) + "]"
        return text


def dict_config(log_format: str, level: str | int = "INFO") -> dict[str, Any]:
    """What `configure` sets up, as a `logging.config.dictConfig` dict: uvicorn applies it
    in each API process it spawns."""
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"line": {"()": f"{__name__}.{formatter.__name__}"}},
        "filters": {"fields": {"()": f"{__name__}.ContextFilter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "line",
                "filters": ["fields"],
            }
        },
        "root": {"handlers": ["stderr"], "level": level},
    }


def configure(
    log_format: str, level: str | int = "INFO", static: Mapping[str, Any] | None = None
) -> None:
    """One stderr handler on the root logger, `static` fields (the worker's node) on every
    line; safe to call again (a prefork child does)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    # A terminal reader knows which worker it is looking at; a log shipper does not.
    handler.addFilter(ContextFilter(static if log_format == "json" else None))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Warnings (Celery's root-user warning, deprecations) become log lines too.
    logging.captureWarnings(True)
