"""Runs one job: claim it, synthesize (or reuse cached audio), encode, store, record.

Plain code with its collaborators passed in, so it is tested without a broker; the
Celery task in `worker.task` only decodes the message and acts on the `Outcome`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from tasks import timestamps, units
from tasks.errors import (
    DeadlineExceeded,
    EngineError,
    FleetError,
    InvalidText,
    PermanentError,
    StorageError,
    WorkerLost,
)
from tasks.jobs import PROGRESS_EVENT, AudioInfo, ErrorInfo, Job, JobStatus, Progress, utc_now
from tasks.storage import Storage
from tasks.store import Claim, ClaimResult, JobStore, PartsDone, Unit
from tasks.text import PIECE_CHARS, group_pieces, split_text
from tasks.units import Part
from worker import parts
from worker.audio import encode
from worker.cache import CachedAudio, ResultCache, request_digest
from worker.engines import Audio, SynthesisRequest
from worker.lease import Runs
from worker.pieces import Spoken, synthesize_in_order
from worker.pieces import timestamps as timestamps_of
from worker.stream import StreamPublisher

log = logging.getLogger(__name__)


class Synthesizer(Protocol):
    """Turns requests into audio, or the error each one alone raised (see worker.batcher)."""

    def synthesize(self, requests: Sequence[SynthesisRequest]) -> list[Audio | FleetError]: ...


@dataclass(frozen=True)
class Outcome:
    """What the task must do next: nothing (acked), or redeliver after `retry_in` seconds."""

    status: JobStatus | None
    retry_in: float | None = None
    # For the worker's metrics (worker.metrics.record_outcome).
    voice: str = ""
    code: str | None = None


_CLAIM_FAILURES = {Claim.EXHAUSTED: WorkerLost.code, Claim.EXPIRED: DeadlineExceeded.code}


def audio_url(job_id: str) -> str:
    return f"/v1/jobs/{job_id}/audio"


class JobRunner:
    def __init__(
        self,
        store: JobStore,
        storage: Storage,
        synthesizer: Synthesizer,
        max_attempts: int,
        cache: ResultCache | None = None,
        model_version: str = "",
        piece_chars: int = PIECE_CHARS,
        runs: Runs | None = None,
        lease_ms: int = 0,
        largest_group: int = 16,
        stream_entries: int = 64,
        stream_ttl_s: int = 3600,
        progress_event_s: float = 10.0,
        max_text_chars: int = 5000,
        unit_chars: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.storage = storage
        self.synthesizer = synthesizer
        self.max_attempts = max_attempts
        self.cache = cache
        self.model_version = model_version
        self.piece_chars = piece_chars
        # How runs name themselves in job leases (worker.lease); None runs without a lease.
        self.runs = runs
        self.lease_ms = lease_ms
        # Pieces go to the synthesizer in groups of 1, 2, 4, ... up to this (worker.pieces).
        self.largest_group = largest_group
        self.stream_entries = stream_entries
        self.stream_ttl_s = stream_ttl_s
        # A job that opted in gets a job.progress webhook at most this often.
        self.progress_event_s = progress_event_s
        # A longer text fans out into units of about `unit_chars` (tasks.units).
        self.max_text_chars = max_text_chars
        self.unit_chars = unit_chars
        # Units found done when their run started (a rerun after a worker died): not redone.
        self.units_resumed = 0
        self.clock = clock

    def run(self, job_id: str) -> Outcome:
        if self.runs is None:
            outcome = self._run(job_id, "")
        else:
            with self.runs.running(job_id) as first:
                if not first:
                    log.info("job %s not run: already running in this process", job_id)
                    return Outcome(status=None)
                outcome = self._run(job_id, self.runs.name)
        if outcome.status is not None and outcome.status.is_terminal():
            # Recorded terminal: the job's stream listeners may close (tasks.streams).
            StreamPublisher.end(self.store.redis, job_id, outcome.status.value)
        return outcome

    def _run(self, job_id: str, name: str) -> Outcome:
        claim = self._claim(job_id, name)
        if claim.verdict is not Claim.RUN:
            log.info("job %s not run: %s", job_id, claim.verdict.value)
            # The claim itself failed a job past its attempts or its deadline: count that end.
            code = _CLAIM_FAILURES.get(claim.verdict)
            if code and (owner := units.parent_of(job_id)) is not None:
                self._fail_book(owner[0], ErrorInfo(code=code, message=f"unit {job_id}: {code}"))
            return Outcome(status=JobStatus.FAILED if code else None, code=code)
        job = self.store.get(job_id)
        if job is None:
            return Outcome(status=None)
        if (unit := self.store.unit(job_id)) is not None:
            return self._run_unit(job, unit, claim, name)
        if job.units is not None:
            # A redelivery of a job that fanned out already: its units are in flight.
            self.store.release_lease(job_id, name)
            return Outcome(status=None)
        if len(job.text) > self.max_text_chars:
            groups = group_pieces(split_text(job.text, self.piece_chars), self.unit_chars)
            if len(groups) > 1:
                self.store.fan_out(job, groups, self.stream_ttl_s)
                log.info("job %s fanned out into %d units", job_id, len(groups))
                return Outcome(status=None, voice=job.voice)
        try:
            audio = self._produce(job)
        except PermanentError as exc:
            self.store.fail(job_id, ErrorInfo(code=exc.code, message=exc.message))
            return Outcome(status=JobStatus.FAILED, voice=job.voice, code=exc.code)
        except Exception as exc:
            error = (
                exc if isinstance(exc, FleetError) else EngineError(f"{type(exc).__name__}: {exc}")
            )
            log.warning("job %s attempt %d failed: %s", job_id, claim.attempts, error.message)
            if claim.attempts < self.max_attempts and self.store.requeue(job_id, name).applied:
                return Outcome(status=JobStatus.QUEUED, retry_in=float(2 ** (claim.attempts - 1)))
            self.store.fail(job_id, ErrorInfo(code=error.code, message=error.message))
            return Outcome(status=JobStatus.FAILED, voice=job.voice, code=error.code)
        result = self.store.succeed(job_id, audio)
        if not result.applied:
            # Canceled while it ran: a canceled job exposes no audio.
            if result.previous is JobStatus.CANCELED:
                self._discard_audio(job)
            return Outcome(status=result.previous, voice=job.voice)
        log.info("job %s succeeded on attempt %d", job_id, claim.attempts)
        return Outcome(status=JobStatus.SUCCEEDED, voice=job.voice)

    def _claim(self, job_id: str, name: str) -> ClaimResult:
        if self.runs is None:
            return self.store.claim(job_id, self.max_attempts)
        stale = self.runs.stale(self.store.lease_holder(job_id))
        return self.store.claim(job_id, self.max_attempts, name, self.lease_ms, stale)

    def _discard_audio(self, job: Job) -> None:
        """Remove a canceled job's object, and the cache entry that points at it."""
        if self.cache is not None:
            digest = request_digest(job, self.model_version, self.cache.sharing)
            self.cache.forget(digest, job.storage_key)
        try:
            self.storage.delete(job.storage_key)
        except Exception as exc:  # the job is canceled either way; the object is an orphan
            log.warning("job %s: cannot delete %s: %s", job.id, job.storage_key, exc)

    def _produce(self, job: Job) -> AudioInfo:
        if self.cache is None:
            return self._synthesize(job)
        digest = request_digest(job, self.model_version, self.cache.sharing)
        hit = self.cache.lookup(digest)
        if hit is not None and (reused := self._reuse(job, digest, hit)) is not None:
            return reused
        if self.cache.lease(digest, job.id):
            try:
                audio = self._synthesize(job)
                self.cache.store(digest, job.storage_key, audio)
                return audio
            finally:
                self.cache.release(digest, job.id)
        hit = self.cache.wait(digest, timeout_s=120.0)
        if hit is not None and (reused := self._reuse(job, digest, hit)) is not None:
            return reused
        return self._synthesize(job)

    def _reuse(self, job: Job, digest: str, hit: CachedAudio) -> AudioInfo | None:
        """The cached object under this job's own key, or None if it is gone."""
        if hit.storage_key != job.storage_key and not self.storage.copy(
            hit.storage_key, job.storage_key
        ):
            if self.cache is not None:
                self.cache.forget(digest, hit.storage_key)
            return None
        if not timestamps.copy(self.store.redis, hit.storage_key, job.storage_key):
            return None  # the timings expired: synthesize again rather than have none
        return hit.audio.model_copy(update={"url": audio_url(job.id)})

    def _run_unit(self, job: Job, unit: Unit, claim: ClaimResult, name: str) -> Outcome:
        """Make one unit's part (unless an earlier run did), then, if it was the book's last
        part, join the book; then record the unit itself done."""
        book = self.store.get(unit.parent)
        if book is None or book.status is not JobStatus.RUNNING:
            # The book was canceled or failed: the rest of it is not made.
            self.store.cancel(job.id)
            return Outcome(status=JobStatus.CANCELED, voice=job.voice)
        try:
            if self.store.has_part(book.id, unit.index):
                self.units_resumed += 1
                log.info("unit %s: its part is recorded already; not made again", job.id)
                done = self.store.record_part(book.id, unit.index, parts.EMPTY)
            else:
                done = self._make_part(book, job, unit)
            if done.complete:
                self._finish_book(book)
        except Exception as exc:
            error = (
                exc if isinstance(exc, FleetError) else EngineError(f"{type(exc).__name__}: {exc}")
            )
            log.warning("unit %s attempt %d failed: %s", job.id, claim.attempts, error.message)
            permanent = isinstance(exc, PermanentError)
            retry_in = float(2 ** (claim.attempts - 1))
            if not permanent and claim.attempts < self.max_attempts:
                if self.store.requeue(job.id, name).applied:
                    return Outcome(status=JobStatus.QUEUED, retry_in=retry_in)
            info = ErrorInfo(code=error.code, message=error.message)
            self.store.fail(job.id, info)
            self._fail_book(book.id, info)
            return Outcome(status=JobStatus.FAILED, voice=job.voice, code=error.code)
        self.store.transition(job.id, ("running",), JobStatus.SUCCEEDED, finished_at=utc_now())
        return Outcome(status=JobStatus.SUCCEEDED, voice=job.voice)

    def _make_part(self, book: Job, job: Job, unit: Unit) -> PartsDone:
        """Synthesize the unit's pieces (streamed as they come), store its raw samples and
        record its part; a progress webhook if the book asked and one is due."""
        requests = [SynthesisRequest(text=p, voice=job.voice, speed=job.speed) for p in unit.pieces]
        stream = StreamPublisher(
            self.store.redis, job, self.stream_entries, self.stream_ttl_s, header=unit.index == 0
        )
        try:
            spoken: Spoken | None = synthesize_in_order(
                self.synthesizer, requests, self.largest_group, stream.samples
            )
        except InvalidText as exc:
            # Every piece of this unit was rejected as text: the book goes on without it.
            spoken, rejected = None, exc.message
        stream.close()
        if spoken is None:
            part = Part(sample_rate=1, texts=[], lengths=[], words=[], rejected=rejected)
        else:
            part = parts.describe(spoken)
            self._put(job.storage_key, parts.encode(spoken), "application/octet-stream")
        done = self.store.record_part(book.id, unit.index, part)
        wants_events = book.callback is not None and PROGRESS_EVENT in book.callback_events
        if wants_events and done.progress is not None and not done.complete:
            gate = units.progress_gate_key(book.id)
            # One event per interval across all the workers of the book's units.
            if self.store.redis.set(gate, 1, nx=True, px=max(1, int(self.progress_event_s * 1000))):
                self.store.record_progress(book.id, done.progress, event=True)
        return done

    def _finish_book(self, book: Job) -> None:
        """Join every part in order (the same seams as one job's pieces), store the book's
        audio and timings, record it succeeded, and drop the parts."""
        recorded = self.store.parts(book.id)
        assert book.units is not None or recorded
        count = book.units if book.units is not None else len(recorded)
        spoken = parts.join(
            [recorded[i] for i in range(count)],
            lambda i: self.storage.read(units.part_key(book.storage_key, i)),
        )
        audio = self._store_spoken(book, spoken)
        result = self.store.succeed(book.id, audio)
        if not result.applied and result.previous is JobStatus.CANCELED:
            self._discard_audio(book)
        if result.applied or (result.previous is not None and result.previous.is_terminal()):
            status = JobStatus.SUCCEEDED if result.applied else result.previous
            assert status is not None
            StreamPublisher.end(self.store.redis, book.id, status.value)
        for index in range(count):
            try:
                self.storage.delete(units.part_key(book.storage_key, index))
            except Exception as exc:  # an orphan part; the book is done either way
                log.warning("book %s: cannot delete part %d: %s", book.id, index, exc)
        log.info("book %s joined from %d units", book.id, count)

    def _fail_book(self, book_id: str, error: ErrorInfo) -> None:
        if self.store.fail(book_id, error).applied:
            StreamPublisher.end(self.store.redis, book_id, JobStatus.FAILED.value)

    def _put(self, key: str, data: bytes, content_type: str) -> None:
        try:
            self.storage.put(key, data, content_type)
        except StorageError:
            raise
        except Exception as exc:
            raise StorageError(f"{type(exc).__name__}: {exc}") from exc

    def _synthesize(self, job: Job) -> AudioInfo:
        pieces = split_text(job.text, self.piece_chars)
        requests = [SynthesisRequest(text=p, voice=job.voice, speed=job.speed) for p in pieces]
        stream = StreamPublisher(self.store.redis, job, self.stream_entries, self.stream_ttl_s)
        # Pieces the engine rejected (a lone "?!") are left out; the rest is the job's speech.
        wants_events = job.callback is not None and PROGRESS_EVENT in job.callback_events
        last_event = [self.clock()]

        def progress(done: int, total: int, audio_s: float) -> None:
            now = self.clock()
            event = wants_events and done < total and now - last_event[0] >= self.progress_event_s
            if event:
                last_event[0] = now
            self.store.record_progress(job.id, Progress(
                pieces_done=done, pieces_total=total, audio_s=round(audio_s, 3)
            ), event=event)  # fmt: skip

        spoken = synthesize_in_order(
            self.synthesizer, requests, self.largest_group, stream.samples, progress
        )
        stream.close()
        return self._store_spoken(job, spoken)

    def _store_spoken(self, job: Job, spoken: Spoken) -> AudioInfo:
        """Encode the job's audio, store it and its timings."""
        encoded = encode(spoken.audio, job.format, job.sample_rate, job.loudness_lufs)
        timings = timestamps_of(spoken, len(spoken.audio.samples))
        self._put(job.storage_key, encoded.data, job.format.content_type)
        timestamps.save(self.store.redis, job.storage_key, timings, self.store.ttl_s)
        return AudioInfo(
            url=audio_url(job.id),
            format=encoded.format,
            sample_rate=encoded.sample_rate,
            duration_s=encoded.duration_s,
            bytes=len(encoded.data),
            sha256=encoded.sha256,
        )
