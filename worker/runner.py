"""Runs one job: claim it, synthesize (or reuse cached audio), encode, store, record.

Plain code with its collaborators passed in, so it is tested without a broker; the
Celery task in `worker.task` only decodes the message and acts on the `Outcome`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from tasks import timestamps, units
from tasks.errors import (
    DeadlineExceeded,
    FleetError,
    PermanentError,
    WorkerLost,
)
from tasks.jobs import PROGRESS_EVENT, AudioInfo, ErrorInfo, Job, JobStatus, Progress
from tasks.storage import Storage
from tasks.store import Claim, ClaimResult, JobStore
from tasks.text import PIECE_CHARS, split_text
from worker.audio import encode
from worker.books import Books
from worker.cache import CachedAudio, ResultCache, request_digest
from worker.engines import Audio, SynthesisRequest
from worker.lease import LeaseLost, Run, Runs
from worker.outcome import Outcome, audio_url, fleet_error
from worker.pieces import Spoken, synthesize_in_order
from worker.pieces import timestamps as timestamps_of
from worker.stream import StreamPublisher
from worker.uploads import as_storage_error

log = logging.getLogger(__name__)


class Synthesizer(Protocol):
    """Turns requests into audio, or the error each one alone raised (see worker.batcher)."""

    def synthesize(self, requests: Sequence[SynthesisRequest]) -> list[Audio | FleetError]: ...


_CLAIM_FAILURES = {Claim.EXHAUSTED: WorkerLost.code, Claim.EXPIRED: DeadlineExceeded.code}


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
        self.clock = clock
        self.books = Books(self, unit_chars)

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
            # Recorded terminal: the job's stream listeners may close (tasks.streams); a
            # unit's stream stays while its book may run (worker.books shortens it).
            linger = {"linger_s": self.stream_ttl_s} if outcome.unit else {}
            StreamPublisher.end(self.store.redis, job_id, outcome.status.value, **linger)
        return outcome

    def _run(self, job_id: str, name: str) -> Outcome:
        claim = self._claim(job_id, name)
        if claim.verdict is not Claim.RUN:
            log.info("job %s not run: %s", job_id, claim.verdict.value)
            # The claim itself failed a job past its attempts or its deadline: count that end.
            code = _CLAIM_FAILURES.get(claim.verdict)
            status = JobStatus.FAILED if code else None
            if (owner := units.parent_of(job_id)) is not None:
                # A unit past its attempts or its book's deadline fails its book.
                failed = code is not None and self.books.fail_book(
                    owner[0], ErrorInfo(code=code, message=f"unit {job_id}: {code}")
                )
                book = JobStatus.FAILED if failed else None
                return Outcome(status=status, code=code, unit=True, book=book)
            return Outcome(status=status, code=code)
        job = self.store.get(job_id)
        if job is None:
            return Outcome(status=None)
        if (unit := self.store.unit(job_id)) is not None:
            outcome = self.books.run_unit(job, unit, claim, name)
            if outcome.book is JobStatus.SUCCEEDED:
                self._remember_book(unit.parent)
            return outcome
        cached = None
        if len(job.text) > self.max_text_chars:
            # A book identical to one made before is that one's audio; one identical to a
            # book being made waits for it; else it fans out.
            cached, leader = self._identical_book(job)
            if leader is not None:
                log.info("book %s follows identical book %s", job_id, leader)
                return Outcome(status=None, voice=job.voice)
            if cached is None and self.books.fan_out(job):
                return Outcome(status=None, voice=job.voice)
        try:
            audio = cached or self._produce(job, Run(name, claim.attempts))
        except LeaseLost:
            log.warning("job %s: taken over by another run; this run's audio dropped", job_id)
            return Outcome(status=None, voice=job.voice)
        except PermanentError as exc:
            self.store.fail(job_id, ErrorInfo(code=exc.code, message=exc.message))
            return Outcome(status=JobStatus.FAILED, voice=job.voice, code=exc.code)
        except Exception as exc:
            error = fleet_error(exc)
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

    def _identical_book(self, job: Job) -> tuple[AudioInfo | None, str | None]:
        """An identical book's audio under this one's own key, if it is cached; else the id
        of an identical book being made, which `job` now follows (the reconciler sends it
        again once that one ended). (None, None): `job` is made, also when the cache or a
        copy fails."""
        if self.cache is None:
            return None, None
        digest = request_digest(job, self.model_version, self.cache.sharing)
        try:
            hit = self.cache.lookup(digest)
            if hit is not None and (reused := self._reuse(job, digest, hit)) is not None:
                return reused, None
        except Exception as exc:
            log.warning("book %s: result cache not read (%s); made anew", job.id, exc)
        try:
            return None, self.cache.lead(digest, job.id, self.store.ttl_s)
        except Exception as exc:
            log.warning("book %s: identical books not looked for (%s); made", job.id, exc)
            return None, None

    def _remember_book(self, book_id: str) -> None:
        """A book just joined goes in the result cache as a job's audio does: its followers
        (`_identical_book`), sent again, copy it from there."""
        if self.cache is None:
            return
        try:
            book = self.store.get(book_id)
            if book is not None and book.status is JobStatus.SUCCEEDED and book.audio:
                digest = request_digest(book, self.model_version, self.cache.sharing)
                self.cache.store(digest, book.storage_key, book.audio)
        except Exception as exc:  # the book succeeded either way; it is just not cached
            log.warning("book %s: not cached: %s", book_id, exc)

    def _produce(self, job: Job, run: Run) -> AudioInfo:
        if self.cache is None:
            return self._synthesize(job, run)
        digest = request_digest(job, self.model_version, self.cache.sharing)
        hit = self.cache.lookup(digest)
        if hit is not None and (reused := self._reuse(job, digest, hit)) is not None:
            return reused
        if self.cache.lease(digest, job.id):
            try:
                audio = self._synthesize(job, run)
                self.cache.store(digest, job.storage_key, audio)
                return audio
            finally:
                self.cache.release(digest, job.id)
        hit = self.cache.wait(digest, timeout_s=120.0)
        if hit is not None and (reused := self._reuse(job, digest, hit)) is not None:
            return reused
        return self._synthesize(job, run)

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

    def _synthesize(self, job: Job, run: Run) -> AudioInfo:
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
        return self._store_spoken(job, spoken, run)

    def _store_spoken(self, job: Job, spoken: Spoken, run: Run) -> AudioInfo:
        """Encode the job's audio, store it and its timings, unless another run took the
        job over meanwhile (a run stalled past its lease): synthesis differs run to run,
        and the stored object must be the one its run records."""
        encoded = encode(spoken.audio, job.format, job.sample_rate, job.loudness_lufs)
        timings = timestamps_of(spoken, len(spoken.audio.samples), encoded.duration_s)
        if run.name and not self.store.keep_run(job.id, run.name, run.attempts, self.lease_ms):
            raise LeaseLost(job.id)
        with as_storage_error():
            self.storage.put(job.storage_key, encoded.data, job.format.content_type)
        timestamps.save(self.store.redis, job.storage_key, timings, self.store.ttl_s)
        return AudioInfo(
            url=audio_url(job.id),
            format=encoded.format,
            sample_rate=encoded.sample_rate,
            duration_s=encoded.duration_s,
            bytes=len(encoded.data),
            sha256=encoded.sha256,
        )
