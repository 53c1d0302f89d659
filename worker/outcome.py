"""What a run tells the Celery task (worker.task) and the worker's metrics."""

from __future__ import annotations

from dataclasses import dataclass

from tasks.errors import EngineError, FleetError
from tasks.jobs import JobStatus


@dataclass(frozen=True)
class Outcome:
    """What the task must do next: nothing (acked), or redeliver after `retry_in` seconds."""

    status: JobStatus | None
    retry_in: float | None = None
    # For the worker's metrics (worker.metrics.record_outcome).
    voice: str = ""
    code: str | None = None
    # A unit of a long job (tasks.units) is not a job the metrics count; `book` is the
    # book's end when this unit's run recorded it.
    unit: bool = False
    book: JobStatus | None = None


def audio_url(job_id: str) -> str:
    return f"/v1/jobs/{job_id}/audio"


def fleet_error(exc: Exception) -> FleetError:
    """What an attempt's failure is recorded as: its own code, or an engine error."""
    return exc if isinstance(exc, FleetError) else EngineError(f"{type(exc).__name__}: {exc}")
