"""Long jobs on the worker's side (tasks.units): fan a book out, make one unit's part, and
join the book when its last part is recorded.

Each step is safe to run twice, since a unit may be delivered again at any point (its
worker killed, its lease lapsed): a part is recorded once (the first run's object wins and
a later run deletes its own); one unit is named the book's joiner when the parts are
complete, and only it (or a run of it again) joins; the book's terminal write is the
store's, once. A book that no longer runs has its parts removed by whichever unit run
sees that, so a canceled or failed book leaves no part behind.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import tempfile
from typing import Protocol

from tasks import timestamps, units
from tasks.errors import InvalidText, PermanentError
from tasks.jobs import PROGRESS_EVENT, AudioInfo, ErrorInfo, Job, JobStatus, utc_now
from tasks.storage import Storage
from tasks.store import ClaimResult, JobStore, PartsDone, Unit
from tasks.text import group_pieces, split_text
from tasks.units import Part
from worker import parts
from worker.audio import AudioWriter
from worker.engines import SynthesisRequest
from worker.outcome import Outcome, audio_url, fleet_error
from worker.pieces import Spoken, Synthesizer, synthesize_in_order
from worker.pieces import timestamps as timestamps_of
from worker.stream import StreamPublisher
from worker.uploads import as_storage_error

log = logging.getLogger(__name__)


class Runner(Protocol):
    """What the unit path reads of the `worker.runner.JobRunner` that builds it (named
    here, not imported: the runner imports this module)."""

    store: JobStore
    storage: Storage
    synthesizer: Synthesizer
    max_attempts: int
    piece_chars: int
    largest_group: int
    stream_entries: int
    stream_ttl_s: int
    progress_event_s: float


class Books:
    """The unit path of `worker.runner.JobRunner`, with the runner's collaborators."""

    def __init__(self, runner: Runner, unit_chars: int) -> None:
        # The runner's store, storage, engine and settings, read where they are used.
        self.runner = runner
        self.store = runner.store
        self.storage = runner.storage
        self.unit_chars = unit_chars
        # Units found done when their run started (a rerun after a worker died): not redone.
        self.resumed = 0

    def fan_out(self, job: Job) -> bool:
        """Make `job` its units if its text splits into more than one; False if it does not
        (it then runs as one job)."""
        groups = group_pieces(split_text(job.text, self.runner.piece_chars), self.unit_chars)
        if len(groups) < 2:
            return False
        self.store.fan_out(job, groups, self.runner.stream_ttl_s)
        log.info("job %s fanned out into %d units", job.id, len(groups))
        return True

    def run_unit(self, job: Job, unit: Unit, claim: ClaimResult, name: str) -> Outcome:
        """Make the unit's part (unless an earlier run did), join the book if this unit is
        its joiner, then record the unit itself done."""
        book = self.store.get(unit.parent, text=False)
        if book is None or book.status is not JobStatus.RUNNING:
            # The book was canceled or failed: the rest of it is not made, its parts go.
            self.store.cancel(job.id)
            if book is not None:
                self.drop_parts(book)
            return Outcome(status=JobStatus.CANCELED, voice=job.voice, unit=True)
        ended: JobStatus | None = None
        try:
            if self.store.has_part(book.id, unit.index):
                self.resumed += 1
                log.info("unit %s: its part is recorded already; not made again", job.id)
                done = self.store.record_part(book.id, unit, None)
            else:
                done = self._make_part(book, job, unit)
            if done.status != JobStatus.RUNNING.value:
                self.drop_parts(book)  # canceled while this unit ran
            elif done.joiner == job.id:
                ended = self._join(book, done)
        except Exception as exc:
            error = fleet_error(exc)
            log.warning("unit %s attempt %d failed: %s", job.id, claim.attempts, error.message)
            if not isinstance(exc, PermanentError) and claim.attempts < self.runner.max_attempts:
                if self.store.requeue(job.id, name).applied:
                    retry_in = float(2 ** (claim.attempts - 1))
                    return Outcome(status=JobStatus.QUEUED, retry_in=retry_in, unit=True)
            info = ErrorInfo(code=error.code, message=error.message)
            self.store.fail(job.id, info)
            failed = self.fail_book(book.id, info)
            return Outcome(
                status=JobStatus.FAILED, voice=job.voice, code=error.code, unit=True,
                book=JobStatus.FAILED if failed else None,
            )  # fmt: skip
        self.store.transition(job.id, ("running",), JobStatus.SUCCEEDED, finished_at=utc_now())
        return Outcome(status=JobStatus.SUCCEEDED, voice=job.voice, unit=True, book=ended)

    def _make_part(self, book: Job, job: Job, unit: Unit) -> PartsDone:
        """Synthesize the unit's pieces (streamed as they come), store its raw samples under
        a key of this run's own and record its part; a progress webhook if the book asked
        for them and none was sent within `progress_event_s`."""
        requests = [SynthesisRequest(text=p, voice=job.voice, speed=job.speed) for p in unit.pieces]
        stream = StreamPublisher(
            self.store.redis,
            job,
            self.runner.stream_entries,
            self.runner.stream_ttl_s,
            header=unit.index == 0,
            followed=unit.index < (book.units or 0) - 1,
        )
        rejected = None
        try:
            spoken: Spoken | None = synthesize_in_order(
                self.runner.synthesizer, requests, self.runner.largest_group, stream.samples
            )
        except InvalidText as exc:
            # Every piece of this unit was rejected as text: the book goes on without it.
            spoken, rejected = None, exc.message
        stream.close()
        key = units.part_key(book.storage_key, unit.index, secrets.token_hex(4))
        if spoken is None:
            part = Part(sample_rate=1, texts=[], lengths=[], words=[], rejected=rejected)
        else:
            part = parts.describe(spoken, key)
            with as_storage_error():
                self.storage.put(key, parts.encode(spoken), "application/octet-stream")
        event = book.callback is not None and PROGRESS_EVENT in book.callback_events
        # One event per interval across all the workers of the book's units.
        event = event and bool(
            self.store.redis.set(
                units.progress_gate_key(book.id), 1, nx=True,
                px=max(1, int(self.runner.progress_event_s * 1000)),
            )
        )  # fmt: skip
        done = self.store.record_part(book.id, unit, part, event=event)
        if not done.new and part.key:
            self._delete(key)  # another run of this unit recorded its part first
        return done

    def _join(self, book: Job, done: PartsDone) -> JobStatus | None:
        """Join every part in order (the same seams as one job's pieces), store the book's
        audio and timings, record it succeeded, and drop the parts. Returns the book's end
        if this run recorded it."""
        recorded = self.store.parts(book.id)
        ordered = [recorded[i] for i in range(done.units)]
        audio = self._store_joined(book, parts.Joining(ordered, self._read))
        result = self.store.succeed(book.id, audio)
        if not result.applied and result.previous is JobStatus.CANCELED:
            self._delete(book.storage_key)  # canceled while it was joined: no audio
        self.drop_parts(book, recorded)
        log.info("book %s joined from %d units", book.id, done.units)
        if result.applied:
            self.end_streams(book.id, done.units, JobStatus.SUCCEEDED)
            return JobStatus.SUCCEEDED
        return None

    def _store_joined(self, book: Job, joining: parts.Joining) -> AudioInfo:
        """Encode the book part by part into a spool file (TMPDIR), hash it, upload it from
        there: memory holds about one part, however long the book. What lands is what
        `worker.audio.encode` makes of the whole joined book."""
        rate = book.format.fixed_rate or book.sample_rate
        with tempfile.TemporaryFile(prefix="ttsfleet-book-") as spool:
            writer = AudioWriter(spool, book.format, rate, rate)
            try:
                for block in parts.blocks_at(joining, rate, book.loudness_lufs):
                    writer.write(block)
            except BaseException:
                writer.abandon()
                raise
            duration_s = writer.close()
            size = spool.seek(0, os.SEEK_END)  # a header written last leaves the file elsewhere
            spool.seek(0)
            digest = hashlib.file_digest(spool, "sha256").hexdigest()
            spool.seek(0)
            with as_storage_error():
                self.storage.put_file(book.storage_key, spool, book.format.content_type)
        timings = timestamps_of(joining.spoken, joining.length, duration_s)
        timestamps.save(self.store.redis, book.storage_key, timings, self.store.ttl_s)
        return AudioInfo(
            url=audio_url(book.id), format=book.format, sample_rate=rate,
            duration_s=duration_s, bytes=size, sha256=digest,
        )  # fmt: skip

    def fail_book(self, book_id: str, error: ErrorInfo) -> bool:
        """Record the book failed (once) and remove its parts; True if this call did."""
        if not self.store.fail(book_id, error).applied:
            return False
        book = self.store.get(book_id, text=False)
        self.end_streams(book_id, book.units if book and book.units else 0, JobStatus.FAILED)
        if book is not None:
            self.drop_parts(book)
        return True

    def end_streams(self, book_id: str, count: int, status: JobStatus) -> None:
        """The book's end on its own stream; its units' streams linger no longer than it."""
        StreamPublisher.end(self.store.redis, book_id, status.value)
        StreamPublisher.linger(self.store.redis, [units.unit_id(book_id, i) for i in range(count)])

    def drop_parts(self, book: Job, recorded: dict[int, Part] | None = None) -> None:
        """Remove the book's part objects and their record (idempotent)."""
        recorded = self.store.parts(book.id) if recorded is None else recorded
        for part in recorded.values():
            if part.key:
                self._delete(part.key)
        self.store.forget_parts(book.id)

    def _read(self, part: Part) -> bytes | None:
        return self.storage.read(part.key) if part.key else None

    def _delete(self, key: str) -> None:
        try:
            self.storage.delete(key)
        except Exception as exc:  # an orphan object; the book's outcome stands either way
            log.warning("cannot delete %s: %s", key, exc)
