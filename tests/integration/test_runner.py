"""The job runner with a real store and storage and tiny test engines, one behaviour each."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from tasks import keys
from tasks.jobs import CallbackInfo, JobStatus
from tasks.storage import FileStorage
from tasks.store import JobStore
from tests.engines import CancelingEngine, CrashingEngine, HalfSecondEngine, RejectingEngine
from tests.helpers.jobs import make_job
from worker.batcher import DirectSynthesizer
from worker.engines import Audio, SynthesisRequest
from worker.lease import Runs
from worker.runner import JobRunner


@pytest.fixture
def storage(tmp_path: Path) -> FileStorage:
    return FileStorage(tmp_path / "audio")


def test_success_stores_audio_and_records_it(store: JobStore, storage: FileStorage) -> None:
    job = make_job(sample_rate=8000)
    store.create(job)
    outcome = JobRunner(store, storage, DirectSynthesizer(HalfSecondEngine()), 3).run(job.id)
    assert outcome.status is JobStatus.SUCCEEDED
    final = store.get(job.id)
    assert final is not None and final.audio is not None
    assert (final.audio.sample_rate, final.audio.duration_s, final.attempts) == (8000, 0.5, 1)
    path = storage.local_path(job.storage_key)
    assert path is not None and path.stat().st_size == final.audio.bytes


def test_engine_error_is_retried_then_fails(store: JobStore, storage: FileStorage) -> None:
    job = make_job()
    store.create(job)
    engine = CrashingEngine()
    runner = JobRunner(store, storage, DirectSynthesizer(engine), 3)
    first, second, third = (runner.run(job.id) for _ in range(3))
    assert (first.status, first.retry_in) == (JobStatus.QUEUED, 1.0)
    assert (second.status, second.retry_in) == (JobStatus.QUEUED, 2.0)
    assert (third.status, third.retry_in) == (JobStatus.FAILED, None)
    final = store.get(job.id)
    assert final is not None and final.error is not None
    assert (final.error.code, final.attempts, engine.calls) == ("engine_error", 3, 3)
    assert "illegal memory access" in final.error.message


def test_rejected_text_fails_at_once(store: JobStore, storage: FileStorage) -> None:
    job = make_job()
    store.create(job)
    outcome = JobRunner(store, storage, DirectSynthesizer(RejectingEngine()), 3).run(job.id)
    final = store.get(job.id)
    assert outcome.retry_in is None and final is not None and final.error is not None
    assert (final.status, final.error.code, final.attempts) == (JobStatus.FAILED, "invalid_text", 1)


def test_canceled_queued_job_never_reaches_the_engine(
    store: JobStore, storage: FileStorage
) -> None:
    job = make_job()
    store.create(job)
    store.cancel(job.id)
    engine = HalfSecondEngine()
    JobRunner(store, storage, DirectSynthesizer(engine), 3).run(job.id)
    assert engine.calls == 0
    assert store.get(job.id).status is JobStatus.CANCELED  # type: ignore[union-attr]


def test_cancel_while_running_leaves_no_audio_and_no_success_event(
    store: JobStore, storage: FileStorage
) -> None:
    job = make_job(callback=CallbackInfo(url="https://hooks.example.com/tts"))
    store.create(job)
    JobRunner(store, storage, DirectSynthesizer(CancelingEngine(store, job.id)), 3).run(job.id)
    final = store.get(job.id)
    assert final is not None and final.status is JobStatus.CANCELED and final.audio is None
    assert storage.local_path(job.storage_key) is None
    # The outbox holds job.canceled only: the late success wrote no job.succeeded.
    outbox = store.redis.zrange(keys.CALLBACK_OUTBOX, 0, -1)
    assert outbox == [f"msg_{job.id}_canceled"]


def test_cancel_after_finish_changes_nothing(store: JobStore, storage: FileStorage) -> None:
    job = make_job(callback=CallbackInfo(url="https://hooks.example.com/tts"))
    store.create(job)
    JobRunner(store, storage, DirectSynthesizer(HalfSecondEngine()), 3).run(job.id)
    assert not store.cancel(job.id).applied
    final = store.get(job.id)
    assert final is not None and final.status is JobStatus.SUCCEEDED and final.audio is not None
    assert store.redis.zrange(keys.CALLBACK_OUTBOX, 0, -1) == [f"msg_{job.id}_succeeded"]


def test_long_text_is_synthesized_in_pieces_and_joined(
    store: JobStore, storage: FileStorage
) -> None:
    text = " ".join(f"Sentence {i} of a long chapter that goes on and on." for i in range(20))
    job = make_job(text=text, sample_rate=16000)
    store.create(job)
    engine = HalfSecondEngine()
    JobRunner(store, storage, DirectSynthesizer(engine), 3).run(job.id)
    final = store.get(job.id)
    assert final is not None and final.audio is not None
    # 300-char pieces in speaking order, in groups of 1, 2, 4, ... (the first is heard early).
    assert engine.calls == 3 and len(engine.texts) == 4
    assert " ".join(engine.texts) == text
    # Four half-second pieces joined with three 10 ms crossfades.
    assert final.audio.duration_s == pytest.approx(4 * 0.5 - 3 * 0.01, abs=0.001)


def test_unpronounceable_piece_is_left_out_of_a_long_text(
    store: JobStore, storage: FileStorage
) -> None:
    job = make_job(text="Hello there.\n?!\nGoodbye now.", sample_rate=16000)
    store.create(job)
    JobRunner(store, storage, DirectSynthesizer(RejectingEngine("?!")), 3, piece_chars=15).run(
        job.id
    )
    final = store.get(job.id)
    assert final is not None and final.status is JobStatus.SUCCEEDED


def test_a_delivery_past_the_limit_ends_failed_worker_lost(
    store: JobStore, storage: FileStorage
) -> None:
    """Deliveries that died mid-run used the attempts up; the outcome says so (for metrics)."""
    job = make_job()
    store.create(job)
    for _ in range(2):
        store.claim(job.id, 2)
    engine = HalfSecondEngine()
    outcome = JobRunner(store, storage, DirectSynthesizer(engine), 2).run(job.id)
    assert (outcome.status, outcome.code, engine.calls) == (JobStatus.FAILED, "worker_lost", 0)


class TakenOverEngine(HalfSecondEngine):
    """While it 'synthesizes', the job's lease comes to name `lease` (or lapses: None) and,
    with `claimed`, a later claim counts one more attempt: as when this run stalls past its
    lease and the reconciler's redelivery starts another, which may even finish first."""

    def __init__(self, store: JobStore, job_id: str, lease: str | None, claimed: bool) -> None:
        super().__init__()
        self.store, self.job_id, self.lease, self.claimed = store, job_id, lease, claimed

    def synthesize(self, batch: Sequence[SynthesisRequest]) -> list[Audio]:
        key = keys.job_lease_key(self.job_id)
        if self.lease is None:
            self.store.redis.delete(key)
        else:
            self.store.redis.set(key, self.lease)
        if self.claimed:
            self.store.redis.hincrby(keys.job_key(self.job_id), "attempts", 1)
        return super().synthesize(batch)


@pytest.mark.parametrize(
    ("lease", "claimed", "stored"),
    [
        ("other-host:1:ab/77", True, False),
        (None, True, False),  # the other run already ended: its lease lapsed too
        (None, False, True),
        ("other-host:1:ab", False, True),
    ],
    ids=["another-run", "another-run-ended", "lapsed", "bare-mark"],
)
def test_a_run_taken_over_stores_nothing_and_leaves_the_job_to_the_new_run(
    store: JobStore, storage: FileStorage, lease: str | None, claimed: bool, stored: bool
) -> None:
    """A run whose job was claimed again, or whose lease names another run, by the time its
    audio is made drops it: the job's object is then only ever the new run's, whose sha256
    it records. A lapsed lease with no claim since, or a worker's bare mark, is no takeover:
    the run takes its lease back and stores."""
    job = make_job()
    store.create(job)
    runs = Runs(worker="this-host:1:cd", alive=lambda pid: True)
    engine = TakenOverEngine(store, job.id, lease, claimed)
    runner = JobRunner(store, storage, DirectSynthesizer(engine), 3, runs=runs, lease_ms=10_000)
    outcome = runner.run(job.id)
    final = store.get(job.id)
    assert final is not None and (storage.local_path(job.storage_key) is not None) == stored
    assert final.status is (JobStatus.SUCCEEDED if stored else JobStatus.RUNNING)
    assert outcome.status is (JobStatus.SUCCEEDED if stored else None)
