"""Opt-in `job.progress` webhooks: queued by the worker with the job's progress, at most
every `progress_event_s`, signed and delivered by the real callbacks worker to a loopback
receiver; the job's own callback record keeps following its terminal event only."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from callbacks.delivery import CallbacksWorker
from callbacks.outbox import Outbox
from client.webhooks import verify_webhook
from tasks import keys
from tasks.jobs import CallbackInfo, JobRequest
from tasks.settings import Settings
from tasks.storage import FileStorage
from tasks.store import JobStore
from tests.engines import HalfSecondEngine
from tests.helpers.deliveries import LOOPBACK, SECRET, callback_of, delivery_for
from tests.helpers.jobs import make_job
from tests.helpers.receivers import Receiver
from worker.batcher import DirectSynthesizer
from worker.runner import JobRunner

# About 1,200 characters: four pieces, made in groups of 1, 2 and 1.
TEXT = " ".join(f"Sentence {i} of a long chapter that goes on and on, and on." for i in range(20))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def cb_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(callback_allowed_networks=LOOPBACK, callback_retry_schedule="0,0.3")


def run_job(
    store: JobStore,
    tmp_path: Path,
    url: str,
    events: list[str],
    every_s: float,
    clock: Callable[[], float],
) -> str:
    job = make_job(
        text=TEXT, sample_rate=16000, callback=CallbackInfo(url=url), callback_events=events
    )
    store.create(job)
    runner = JobRunner(
        store, FileStorage(tmp_path / "audio"), DirectSynthesizer(HalfSecondEngine()), 3,
        progress_event_s=every_s, clock=clock,
    )  # fmt: skip
    assert runner.run(job.id).status is not None
    return job.id


def test_progress_events_are_signed_and_leave_the_terminal_state_alone(
    store: JobStore, cb_settings: Settings, receiver: Receiver, tmp_path: Path
) -> None:
    job_id = run_job(store, tmp_path, receiver.url, ["job.progress"], 0.0, lambda: 0.0)
    assert set(Outbox(store.redis, 10).pending()) == {
        keys.progress_event_id(job_id, 1),
        keys.progress_event_id(job_id, 3),
        keys.callback_event_id(job_id, "succeeded"),
    }
    receiver.script = [(500, {})]  # the first delivery fails, whichever it is
    CallbacksWorker(delivery_for(cb_settings, store), threads=1, poll_s=0.02).run(burst=True)
    bodies = {}
    for got in receiver.received:
        verify_webhook(SECRET, got.headers, got.body)
        bodies[got.headers["webhook-id"]] = json.loads(got.body)
    progress = {i: b for i, b in bodies.items() if b["type"] == "job.progress"}
    assert progress and all(b["data"]["id"] == job_id and b["timestamp"] for b in progress.values())
    # Each tells the progress it was queued for, which its id counts, not the job's by then.
    for event_id, body in progress.items():
        assert body["data"]["progress"]["pieces_done"] == int(event_id.rsplit("_", 1)[1])
        assert body["data"]["status"] == "succeeded"  # the job is as it is when sent
    # The job's callback record shows its terminal event, never a progress event's attempt.
    final = callback_of(store, job_id)
    assert final.state in ("delivered", "pending") and final.attempts <= 2
    terminal = keys.callback_event_id(job_id, "succeeded")
    pending = Outbox(store.redis, 10).pending()
    # A failed progress event is not retried; the terminal one would be.
    assert all(not event.startswith(f"msg_{job_id}_progress") for event in pending)
    assert set(pending) <= {terminal}


def test_progress_events_are_opt_in_and_spaced(
    store: JobStore, receiver: Receiver, tmp_path: Path
) -> None:
    quiet = run_job(store, tmp_path, receiver.url, [], 0.0, lambda: 0.0)
    spaced = run_job(store, tmp_path, receiver.url, ["job.progress"], 10.0, lambda: 0.0)
    pending = set(Outbox(store.redis, 10).pending())
    # Not asked for: none. Asked for, but the clock never moved 10 s: none either.
    assert pending == {
        keys.callback_event_id(quiet, "succeeded"),
        keys.callback_event_id(spaced, "succeeded"),
    }
    ticks = iter(range(0, 1000, 6))  # each piece group 6 s apart: every other one is sent
    paced = run_job(store, tmp_path, receiver.url, ["job.progress"], 10.0, lambda: next(ticks))
    sent = {e for e in Outbox(store.redis, 10).pending() if e.startswith(f"msg_{paced}_progress")}
    assert sent == {keys.progress_event_id(paced, 3)}


def test_callback_events_need_a_callback_url_and_known_types() -> None:
    with pytest.raises(ValueError, match="callback_events needs a callback_url"):
        JobRequest.model_validate({"text": "hi", "callback_events": ["job.progress"]})
    with pytest.raises(ValueError, match="callback_events"):
        JobRequest.model_validate(
            {"text": "hi", "callback_url": "https://example.com/h", "callback_events": ["job.x"]}
        )


def test_a_delivered_progress_event_is_not_the_jobs_callback_state(
    store: JobStore, cb_settings: Settings, receiver: Receiver
) -> None:
    from tasks.jobs import Progress
    from tasks.store import Claim

    job = make_job(callback=CallbackInfo(url=receiver.url), callback_events=["job.progress"])
    store.create(job)
    assert store.claim(job.id, 3).verdict is Claim.RUN
    progress = Progress(pieces_done=1, pieces_total=4, audio_s=12.5)
    assert store.record_progress(job.id, progress, event=True)
    assert store.record_progress(job.id, progress, event=True)  # the same event: written once
    CallbacksWorker(delivery_for(cb_settings, store), threads=1, poll_s=0.02).run(burst=True)
    assert len(receiver.received) == 1
    body = json.loads(receiver.received[0].body)
    assert body["type"] == "job.progress" and body["data"]["progress"] == progress.model_dump()
    assert body["data"]["status"] == "running"
    assert callback_of(store, job.id) == CallbackInfo(url=receiver.url)  # pending, 0 attempts
    assert store.cancel(job.id).applied
    assert not store.record_progress(job.id, progress, event=True)  # ended: nothing moves
