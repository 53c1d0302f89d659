"""Runs one job: claim it, synthesize, encode, store, record the outcome.

Plain code with its collaborators passed in, so it is tested without a broker; the
Celery task in `worker.task` only decodes the message and acts on the `Outcome`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tasks.errors import EngineError, FleetError, PermanentError, StorageError
from tasks.jobs import AudioInfo, ErrorInfo, Job, JobStatus
from tasks.storage import Storage
from tasks.store import Claim, JobStore
from worker.audio import encode
from worker.engines import Engine, SynthesisRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What the task must do next: nothing (acked), or redeliver after `retry_in` seconds."""

    status: JobStatus | None
    retry_in: float | None = None


def audio_url(job_id: str) -> str:
    return f"/v1/jobs/{job_id}/audio"


class JobRunner:
    def __init__(
        self, store: JobStore, storage: Storage, engine: Engine, max_attempts: int
    ) -> None:
        self.store = store
        self.storage = storage
        self.engine = engine
        self.max_attempts = max_attempts

    def run(self, job_id: str) -> Outcome:
        claim = self.store.claim(job_id, self.max_attempts)
        if claim.verdict is not Claim.RUN:
            log.info("job %s not run: %s", job_id, claim.verdict.value)
            return Outcome(status=None)
        job = self.store.get(job_id)
        if job is None:
            return Outcome(status=None)
        try:
            audio = self._produce(job)
        except PermanentError as exc:
            self.store.fail(job_id, ErrorInfo(code=exc.code, message=exc.message))
            return Outcome(status=JobStatus.FAILED)
        except Exception as exc:
            error = (
                exc if isinstance(exc, FleetError) else EngineError(f"{type(exc).__name__}: {exc}")
            )
            log.warning("job %s attempt %d failed: %s", job_id, claim.attempts, error.message)
            if claim.attempts < self.max_attempts and self.store.requeue(job_id).applied:
                return Outcome(status=JobStatus.QUEUED, retry_in=float(2 ** (claim.attempts - 1)))
            self.store.fail(job_id, ErrorInfo(code=error.code, message=error.message))
            return Outcome(status=JobStatus.FAILED)
        result = self.store.succeed(job_id, audio)
        if not result.applied:
            # Canceled while it ran: a canceled job exposes no audio.
            if result.previous is JobStatus.CANCELED:
                self.storage.delete(job.storage_key)
            return Outcome(status=result.previous)
        return Outcome(status=JobStatus.SUCCEEDED)

    def _produce(self, job: Job) -> AudioInfo:
        request = SynthesisRequest(text=job.text, voice=job.voice, speed=job.speed)
        outputs = self.engine.synthesize([request])
        if len(outputs) != 1:
            raise EngineError(f"engine returned {len(outputs)} outputs for 1 input")
        encoded = encode(outputs[0], job.format, job.sample_rate)
        try:
            self.storage.put(job.storage_key, encoded.data, job.format.content_type)
        except StorageError:
            raise
        except Exception as exc:
            raise StorageError(f"{type(exc).__name__}: {exc}") from exc
        return AudioInfo(
            url=audio_url(job.id),
            format=encoded.format,
            sample_rate=encoded.sample_rate,
            duration_s=encoded.duration_s,
            bytes=len(encoded.data),
            sha256=encoded.sha256,
        )
