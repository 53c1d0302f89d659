"""Long jobs fan out into units (tasks.units): the runner with a real store and storage and
in-process engines, the units run in any order as any worker would take them."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import redis
import soundfile

from scheduler.reconciler import Reconciler
from tasks import keys, timestamps, units
from tasks.app import create_app as create_celery
from tasks.jobs import AudioFormat, CallbackInfo, Job, JobStatus
from tasks.settings import ModelSpec, Settings, VoiceSpec
from tasks.storage import FileStorage
from tasks.store import JobStore
from tasks.text import group_pieces, split_text
from tasks.units import Part
from tests.conftest import ApiServer, RedisServer, fleet_settings, serving
from tests.engines import RATE, CrashingEngine, TextEngine, TextToneEngine
from tests.helpers import audio_probe
from tests.helpers.jobs import AUDIO, make_job
from worker.audio import encode, join
from worker.batcher import DirectSynthesizer
from worker.cache import ResultCache, request_digest
from worker.engines import Audio, SynthesisRequest
from worker.runner import JobRunner

# Thirty sentences, about 1,700 characters: past the runners' 600-character limit below.
BOOK = " ".join(
    f"Chapter one, sentence {i}: the lighthouse keeper counted {i} ships before dawn."
    for i in range(30)
)
LIMIT, UNIT = 600, 400


@pytest.fixture
def storage(tmp_path: Path) -> FileStorage:
    return FileStorage(tmp_path / "audio")


def runner(store: JobStore, storage: FileStorage, engine: object, **options: object) -> JobRunner:
    return JobRunner(
        store, storage, DirectSynthesizer(engine),  # type: ignore[arg-type]
        3, max_text_chars=LIMIT, unit_chars=UNIT, **options,  # type: ignore[arg-type]
    )  # fmt: skip


def fan_out(store: JobStore, storage: FileStorage, **fields: object) -> tuple[Job, list[str]]:
    """A book submitted and taken once: it is now its units, queued."""
    job = make_job(text=BOOK, voice="tone", **{"sample_rate": 16000, **fields})
    store.create(job)
    outcome = runner(store, storage, TextEngine()).run(job.id)
    assert outcome.status is None
    book = store.get(job.id)
    assert book is not None and book.units is not None
    return book, [units.unit_id(job.id, i) for i in range(book.units)]


def test_a_long_text_becomes_units_queued_in_order_for_the_dispatcher(
    store: JobStore, storage: FileStorage, redis_client: redis.Redis
) -> None:
    book, unit_ids = fan_out(store, storage)
    groups = group_pieces(split_text(BOOK), UNIT)
    assert book.units == len(groups) > 2 and book.status is JobStatus.RUNNING
    assert book.progress is not None
    assert (book.progress.pieces_done, book.progress.pieces_total) == (0, sum(map(len, groups)))
    # Each unit holds its exact pieces; the dispatcher pops the right end first.
    for index, unit_id in enumerate(unit_ids):
        unit = store.unit(unit_id)
        assert unit is not None and (unit.parent, unit.index) == (book.id, index)
        assert unit.pieces == groups[index]
    pending = redis_client.lrange(keys.pending_key(book.model, "normal", book.tenant), 0, -1)
    assert pending[::-1] == unit_ids
    # The tenant sees (and counts) one job; the units are nobody's jobs.
    assert redis_client.zrange(keys.tenant_jobs_key(book.tenant), 0, -1) == [book.id]
    assert redis_client.zrange(keys.tenant_status_jobs_key(book.tenant, "queued"), 0, -1) == []
    assert redis_client.zrange(keys.tenant_active_key(book.tenant), 0, -1) == [book.id]
    assert store.get_for_tenant(book.tenant, unit_ids[0]) is None
    # The units are in flight now, not the job: the reconciler must not send it again.
    assert redis_client.zscore(keys.inflight_key(book.model), book.id) is None


@pytest.mark.parametrize(
    ("fmt", "rate", "lufs"),
    [
        (AudioFormat.WAV, 16000, None),
        (AudioFormat.FLAC, 8000, None),  # resampled as it streams
        (AudioFormat.MP3, 16000, None),
        (AudioFormat.WAV, 16000, -20.0),  # leveled by the whole book's measure, in passes
        (AudioFormat.FLAC, 8000, -16.0),
    ],
    ids=["wav", "flac-8k", "mp3", "wav-leveled", "flac-8k-leveled"],
)
def test_units_run_in_any_order_and_the_book_is_its_pieces_joined(
    store: JobStore, storage: FileStorage, fmt: AudioFormat, rate: int, lufs: float | None
) -> None:
    book, unit_ids = fan_out(store, storage, format=fmt, sample_rate=rate, loudness_lufs=lufs)
    engine = TextEngine()
    run = runner(store, storage, engine)
    for unit_id in reversed(unit_ids):
        assert run.run(unit_id).status is JobStatus.SUCCEEDED
    final = store.get(book.id)
    assert final is not None and final.status is JobStatus.SUCCEEDED and final.audio is not None
    pieces = split_text(BOOK)
    alone = TextEngine().synthesize([SynthesisRequest(text=p, voice="tone") for p in pieces])
    expected = encode(join(alone), fmt, rate, lufs)
    path = storage.local_path(book.storage_key)
    assert path is not None and path.read_bytes() == expected.data
    assert (final.audio.bytes, final.audio.sha256) == (len(expected.data), expected.sha256)
    assert (final.audio.duration_s, final.audio.sample_rate) == (expected.duration_s, rate)
    assert final.progress is not None
    assert final.progress.pieces_done == final.progress.pieces_total == len(pieces)
    # Every piece once, and the parts are gone once joined.
    assert sorted(engine.texts) == sorted(pieces)
    assert part_objects(storage) == [] and store.parts(book.id) == {}


def test_an_identical_book_is_the_first_ones_audio_from_the_result_cache(
    store: JobStore, storage: FileStorage, redis_client: redis.Redis
) -> None:
    cache = ResultCache(store.redis, ttl_s=3600)
    engine = TextEngine()
    run = runner(store, storage, engine, cache=cache)
    first = make_job(text=BOOK, voice="tone", sample_rate=16000)
    store.create(first)
    assert run.run(first.id).status is None  # fanned out
    for index in range(store.get(first.id).units):  # type: ignore[union-attr]
        run.run(units.unit_id(first.id, index))
    made = len(engine.texts)
    twin = make_job(text=BOOK, voice="tone", sample_rate=16000)
    store.create(twin)
    assert run.run(twin.id).status is JobStatus.SUCCEEDED  # at once: no units
    done, original = store.get(twin.id), store.get(first.id)
    assert done is not None and original is not None and done.units is None
    assert done.audio is not None and original.audio is not None
    assert (done.audio.sha256, done.audio.bytes) == (original.audio.sha256, original.audio.bytes)
    assert done.audio.url.endswith(f"/{twin.id}/audio") and len(engine.texts) == made
    path = storage.local_path(twin.storage_key)
    assert path is not None and path.read_bytes() == storage.read(first.storage_key)
    assert redis_client.exists(keys.timestamps_key(twin.storage_key))


def test_an_identical_book_submitted_meanwhile_follows_the_first_and_copies_its_audio(
    store: JobStore, storage: FileStorage, redis_client: redis.Redis, settings: Settings
) -> None:
    """The twin of a book being made neither fans out nor holds a worker: it follows, the
    reconciler leaves it alone while the first is made and sends it again once that ended,
    and it is then the first one's audio: one book's pieces synthesized for both."""
    cache = ResultCache(store.redis, ttl_s=3600)
    engine = TextEngine()
    run = runner(store, storage, engine, cache=cache)
    first = make_job(text=BOOK, voice="tone", sample_rate=16000)
    twin = make_job(text=BOOK, voice="tone", sample_rate=16000)
    for job in (first, twin):
        store.create(job)
        assert run.run(job.id).status is None
        redis_client.zadd(keys.inflight_key(job.model), {job.id: 1})  # as dispatched
    waiting = store.get(twin.id)
    assert waiting is not None and waiting.status is JobStatus.RUNNING and waiting.units is None
    assert waiting.attempts == 0  # it ran nothing: its claim's attempt is given back
    assert redis_client.get(keys.book_follows_key(twin.id)) == first.id
    assert not redis_client.exists(keys.job_lease_key(twin.id))
    reconciler = Reconciler(redis_client, create_celery(settings), [twin.model], lease_s=0)
    assert reconciler.pass_once() == 0  # the first is being made: the twin waits
    assert redis_client.zscore(keys.inflight_key(twin.model), twin.id) is not None
    for index in range(store.get(first.id).units):  # type: ignore[union-attr]
        run.run(units.unit_id(first.id, index))
    made = len(engine.texts)
    assert made == len(split_text(BOOK))
    assert reconciler.pass_once() == 1  # the first ended: the twin is sent again
    assert run.run(twin.id).status is JobStatus.SUCCEEDED
    done, original = store.get(twin.id), store.get(first.id)
    assert done is not None and original is not None and done.units is None
    assert done.audio is not None and original.audio is not None
    assert (done.audio.sha256, done.attempts) == (original.audio.sha256, 1)
    assert len(engine.texts) == made


def test_the_follower_of_a_book_that_ended_without_audio_is_made_itself(
    store: JobStore, storage: FileStorage, redis_client: redis.Redis, settings: Settings
) -> None:
    cache = ResultCache(store.redis, ttl_s=3600)
    run = runner(store, storage, TextEngine(), cache=cache)
    first = make_job(text=BOOK, voice="tone", sample_rate=16000)
    twin = make_job(text=BOOK, voice="tone", sample_rate=16000)
    for job in (first, twin):
        store.create(job)
        assert run.run(job.id).status is None
    redis_client.zadd(keys.inflight_key(twin.model), {twin.id: 1})
    store.cancel(first.id)
    reconciler = Reconciler(redis_client, create_celery(settings), [twin.model], lease_s=0)
    assert reconciler.pass_once() == 1
    assert run.run(twin.id).status is None  # it leads now: fanned out
    made = store.get(twin.id)
    assert made is not None and made.units is not None and made.units > 1
    assert made.attempts == 1
    assert not redis_client.exists(keys.book_follows_key(twin.id))
    assert redis_client.get(keys.book_leader_key(request_digest(twin, ""))) == twin.id


def test_a_cached_book_that_cannot_be_copied_is_made_anew(
    store: JobStore, storage: FileStorage
) -> None:
    """The cache entry points at an object the storage cannot read (a folder here, an S3
    outage in life): a miss, so the book fans out rather than failing or hanging."""
    cache = ResultCache(store.redis, ttl_s=3600)
    book = make_job(text=BOOK, voice="tone", sample_rate=16000)
    (storage.root / "acme" / "unreadable.wav").mkdir(parents=True)
    cache.store(request_digest(book, ""), "acme/unreadable.wav", AUDIO)
    store.create(book)
    assert runner(store, storage, TextEngine(), cache=cache).run(book.id).status is None
    fanned = store.get(book.id)
    assert fanned is not None and fanned.units is not None and fanned.units > 1


def part_objects(storage: FileStorage) -> list[Path]:
    return sorted(storage.root.rglob("*.f32"))


def test_book_timestamps_cover_its_audio_in_order(store: JobStore, storage: FileStorage) -> None:
    book, unit_ids = fan_out(store, storage)
    run = runner(store, storage, TextEngine())
    for unit_id in unit_ids:
        run.run(unit_id)
    found = timestamps.load(store.redis, book.storage_key)
    assert found is not None and found.granularity.value == "sentence"
    assert [item.text for item in found.items] == split_text(BOOK)
    final = store.get(book.id)
    assert final is not None and final.audio is not None
    ends = [item.end_s for item in found.items]
    starts = [item.start_s for item in found.items]
    assert starts[0] == 0 and all(b >= a for a, b in zip(ends, starts[1:], strict=False))
    assert ends[-1] == pytest.approx(final.audio.duration_s, abs=0.001)


def test_a_unit_whose_part_is_recorded_is_not_made_again(
    store: JobStore, storage: FileStorage, redis_client: redis.Redis
) -> None:
    book, unit_ids = fan_out(store, storage)
    engine = TextEngine()
    run = runner(store, storage, engine)
    run.run(unit_ids[0])
    made = len(engine.texts)
    # Its worker died after the part was recorded, before the unit itself was: the unit is
    # delivered again.
    redis_client.hset(keys.job_key(unit_ids[0]), "status", "running")
    assert run.run(unit_ids[0]).status is JobStatus.SUCCEEDED
    assert len(engine.texts) == made and run.books.resumed == 1
    for unit_id in unit_ids[1:]:
        run.run(unit_id)
    final = store.get(book.id)
    assert final is not None and final.status is JobStatus.SUCCEEDED
    assert sorted(engine.texts) == sorted(split_text(BOOK))
    assert final.progress is not None and final.progress.pieces_done == len(split_text(BOOK))


def test_canceling_a_book_stops_its_remaining_units(
    store: JobStore, storage: FileStorage, redis_client: redis.Redis
) -> None:
    book, unit_ids = fan_out(store, storage, callback=CallbackInfo(url="https://h.example/x"))
    engine = TextEngine()
    run = runner(store, storage, engine)
    run.run(unit_ids[0])
    assert store.cancel(book.id).applied
    made = len(engine.texts)
    for unit_id in unit_ids[1:]:
        assert run.run(unit_id).status is JobStatus.CANCELED
    assert len(engine.texts) == made
    final = store.get(book.id)
    assert final is not None and final.status is JobStatus.CANCELED and final.audio is None
    events = redis_client.zrange(keys.CALLBACK_OUTBOX, 0, -1)
    assert events == [keys.callback_event_id(book.id, "canceled")]
    # The part made before the cancel is gone with it.
    assert part_objects(storage) == [] and store.parts(book.id) == {}


def test_a_unit_that_keeps_failing_fails_the_book_once(
    store: JobStore, storage: FileStorage, redis_client: redis.Redis
) -> None:
    book, unit_ids = fan_out(store, storage, callback=CallbackInfo(url="https://h.example/x"))
    run = runner(store, storage, CrashingEngine())
    outcomes = [run.run(unit_ids[1]) for _ in range(3)]
    assert [o.status for o in outcomes] == [JobStatus.QUEUED, JobStatus.QUEUED, JobStatus.FAILED]
    final = store.get(book.id)
    assert final is not None and final.status is JobStatus.FAILED and final.error is not None
    assert final.error.code == "engine_error"
    # The other units are not made now, and the book has one terminal event.
    assert run.run(unit_ids[0]).status is JobStatus.CANCELED
    events = redis_client.zrange(keys.CALLBACK_OUTBOX, 0, -1)
    assert events == [keys.callback_event_id(book.id, "failed")]


def test_a_redelivered_book_is_not_fanned_out_twice(
    store: JobStore, storage: FileStorage, redis_client: redis.Redis
) -> None:
    book, unit_ids = fan_out(store, storage)
    assert runner(store, storage, TextEngine()).run(book.id).status is None
    pending = redis_client.lrange(keys.pending_key(book.model, "normal", book.tenant), 0, -1)
    assert len(pending) == len(unit_ids)


def test_a_stream_of_a_book_continues_its_first_units_container(
    store: JobStore, storage: FileStorage, redis_server: RedisServer
) -> None:
    book, unit_ids = fan_out(store, storage)
    run = runner(store, storage, TextEngine())
    for unit_id in unit_ids:
        run.run(unit_id)
    client = redis.Redis.from_url(redis_server.url)
    data = b""
    for index, unit_id in enumerate(unit_ids):
        entries = client.xrange(keys.audio_stream_key(unit_id))
        body = b"".join(fields[b"d"] for _, fields in entries if b"d" in fields)
        assert entries[-1][1] == {b"end": b"succeeded"}
        assert body.startswith(b"RIFF") == (index == 0)
        data += body
    streamed, rate = soundfile.read(io.BytesIO(data), dtype="int16")
    path = storage.local_path(book.storage_key)
    assert path is not None
    stored, _ = soundfile.read(path, dtype="int16")
    # The stream joins units end to end; the stored file crossfades each seam (10 ms).
    assert rate == 16000
    assert 0 <= len(streamed) - len(stored) <= (len(unit_ids) - 1) * 16000 // 50
    assert np.asarray(streamed).size > 0


# The same behaviours through the real processes: API with its dispatcher, a worker.


@contextmanager
def fleet_of_books(
    redis_server: RedisServer, tmp_path: Path, **overrides: object
) -> Iterator[tuple[ApiServer, Path]]:
    """The API, its dispatcher and a worker of two processes on the tone engine, which
    logs each text it synthesizes to the returned file."""
    log = tmp_path / "synthesized.log"
    settings = fleet_settings(
        redis_server, tmp_path, db=8, rate_limit_per_s=0, max_text_chars=LIMIT,
        unit_chars=UNIT, **{"result_cache": False, **overrides},
        models={"m": ModelSpec(engine="tests.engines:TextToneEngine",
                               options={"seconds": 0.05, "log": str(log)},
                               voices={"tone": VoiceSpec(language="en", sample_rate=16000)})},
    )  # fmt: skip
    redis.Redis.from_url(settings.redis_url).flushdb()
    with serving(settings, tmp_path / "worker.log", concurrency=2) as (api, _):
        yield api, log


@pytest.fixture
def book_fleet(redis_server: RedisServer, tmp_path: Path) -> Iterator[tuple[ApiServer, Path]]:
    with fleet_of_books(redis_server, tmp_path) as fleet:
        yield fleet


def test_two_identical_books_submitted_together_are_made_once(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Through the real processes: one book fans out, its twin follows it, and the
    reconciler sends the twin again once the first is joined; both end with one audio."""
    with (
        fleet_of_books(
            redis_server, tmp_path, result_cache=True, job_lease_s=2, reconcile_interval_s=0.5
        ) as (api, log),
        api.client() as http,
    ):
        book = {"text": BOOK, "voice": "tone"}
        response = http.post("/v1/jobs/batch", json={"jobs": [book, book]})
        assert response.status_code == 202, response.text
        ids = [job["id"] for job in response.json()["jobs"]]
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            jobs = [http.get(f"/v1/jobs/{job_id}").json() for job_id in ids]
            if all(job["status"] == "succeeded" for job in jobs):
                break
            assert all(job["status"] in ("queued", "running", "succeeded") for job in jobs), jobs
            time.sleep(0.2)
        else:
            pytest.fail(f"books not done: {jobs}")
    assert jobs[0]["audio"]["sha256"] == jobs[1]["audio"]["sha256"]
    assert len(log.read_text().splitlines()) == len(split_text(BOOK))  # one book's pieces


def test_a_book_streams_while_made_and_ends_as_its_pieces_joined(
    book_fleet: tuple[ApiServer, Path],
) -> None:
    api, log = book_fleet
    with api.client() as http:
        response = http.post("/v1/jobs", json={"text": BOOK, "voice": "tone"})
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        chunks: list[bytes] = []
        status_at_first = ""
        with http.stream("GET", f"/v1/jobs/{job_id}/audio/stream", timeout=60) as stream:
            assert stream.status_code == 200 and stream.headers["content-type"] == "audio/wav"
            for chunk in stream.iter_raw():
                if not chunks:
                    status_at_first = http.get(f"/v1/jobs/{job_id}").json()["status"]
                chunks.append(chunk)
        job = http.get(f"/v1/jobs/{job_id}").json()
        assert status_at_first == "running" and job["status"] == "succeeded"
        progress = job["progress"]
        assert progress["pieces_done"] == progress["pieces_total"] == len(split_text(BOOK))
        stored = http.get(f"/v1/jobs/{job_id}/audio").content
        captions = http.get(f"/v1/jobs/{job_id}/timestamps").json()
    pieces = split_text(BOOK)
    alone = TextToneEngine(ModelSpec(engine="x", voices={})).synthesize(
        [SynthesisRequest(text=p, voice="tone") for p in pieces]
    )
    assert stored == encode(join(alone), AudioFormat.WAV, 16000, None).data
    streamed, _ = soundfile.read(io.BytesIO(b"".join(chunks)), dtype="int16")
    samples, _ = soundfile.read(io.BytesIO(stored), dtype="int16")
    assert 0 <= len(streamed) - len(samples) <= (len(group_pieces(pieces, UNIT)) - 1) * 160
    assert [item["text"] for item in captions["items"]] == pieces
    # Each piece was made once, by whichever worker process took its unit.
    assert sorted(log.read_text().splitlines()) == sorted(pieces)


def test_an_opus_book_streams_as_one_ogg_stream(book_fleet: tuple[ApiServer, Path]) -> None:
    """Units encoded by two worker processes at once, paged by the API in order: one Ogg
    stream ffmpeg decodes to the book's audio, plus each unit encoder's look-ahead and
    padding (under 27 ms a unit) and the 10 ms the stored file crossfades at each seam."""
    api, _ = book_fleet
    with api.client() as http:
        response = http.post("/v1/jobs", json={"text": BOOK, "voice": "tone", "format": "opus"})
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        with http.stream("GET", f"/v1/jobs/{job_id}/audio/stream", timeout=60) as stream:
            assert stream.headers["content-type"] == "audio/ogg; codecs=opus"
            data = stream.read()
        job = http.get(f"/v1/jobs/{job_id}").json()
        stored = http.get(f"/v1/jobs/{job_id}/audio").content
    assert job["status"] == "succeeded"
    streamed, kept = audio_probe.decode(data), audio_probe.decode(stored)
    count = len(group_pieces(split_text(BOOK), UNIT))
    assert 0 <= len(streamed) - len(kept) < count * (960 + 312) + (count - 1) * 480


class RacedEngine(TextEngine):
    """While it makes unit 0, another live run of that unit records its part first."""

    def __init__(self, store: JobStore, book: Job) -> None:
        super().__init__()
        self.store, self.book = store, book

    def synthesize(self, batch: Sequence[SynthesisRequest]) -> list[Audio]:
        unit = self.store.unit(units.unit_id(self.book.id, 0))
        if unit is not None and batch[0].text in unit.pieces and not self.store.parts(self.book.id):
            other = Part(key="other.f32", sample_rate=RATE, texts=["x"], lengths=[1], words=[None])
            self.store.record_part(self.book.id, unit, other)
        return super().synthesize(batch)


def test_a_second_live_run_of_a_unit_keeps_no_part_of_its_own(
    store: JobStore, storage: FileStorage
) -> None:
    book, unit_ids = fan_out(store, storage)
    run = runner(store, storage, RacedEngine(store, book))
    run.run(unit_ids[0])
    assert store.parts(book.id)[0].key == "other.f32"
    assert part_objects(storage) == []  # this run's object went: the other's part counts


def test_a_unit_delivered_again_after_its_book_was_joined_makes_and_joins_nothing(
    store: JobStore, storage: FileStorage, redis_client: redis.Redis
) -> None:
    book, unit_ids = fan_out(store, storage)
    engine = TextEngine()
    run = runner(store, storage, engine)
    for unit_id in unit_ids:
        run.run(unit_id)
    final = store.get(book.id)
    assert final is not None and final.status is JobStatus.SUCCEEDED
    made = len(engine.texts)
    redis_client.hset(keys.job_key(unit_ids[1]), "status", "running")
    assert run.run(unit_ids[1]).status is JobStatus.CANCELED
    assert len(engine.texts) == made and part_objects(storage) == []
    assert store.get(book.id) == final


def test_the_claim_and_the_reconciler_leave_a_fanned_out_book_to_its_units(
    store: JobStore, storage: FileStorage, redis_client: redis.Redis, settings: Settings
) -> None:
    book, _ = fan_out(store, storage)
    # A dispatcher's re-send of the book's own message: acked, no attempt counted.
    attempts = book.attempts
    assert store.claim(book.id, 3).verdict.value == "fanned"
    assert runner(store, storage, TextEngine()).run(book.id).status is None
    again = store.get(book.id)
    assert again is not None and again.attempts == attempts and again.status is JobStatus.RUNNING
    # Back in the in-flight set by such a re-send: the reconciler lets it go, never re-sends.
    redis_client.zadd(keys.inflight_key(book.model), {book.id: 1})
    reconciler = Reconciler(redis_client, create_celery(settings), [book.model], lease_s=0)
    assert reconciler.pass_once() == 0
    assert redis_client.zscore(keys.inflight_key(book.model), book.id) is None


def test_a_book_asks_for_progress_events_once_per_interval(
    store: JobStore, storage: FileStorage, redis_client: redis.Redis
) -> None:
    book, unit_ids = fan_out(
        store, storage, callback=CallbackInfo(url="https://h.example/x"),
        callback_events=["job.progress"],
    )  # fmt: skip
    run = runner(store, storage, TextEngine(), progress_event_s=3600)
    for unit_id in unit_ids:
        run.run(unit_id)
    events = redis_client.zrange(keys.CALLBACK_OUTBOX, 0, -1)
    progress = [e for e in events if "_progress_" in e]
    assert len(progress) == 1 and keys.callback_event_id(book.id, "succeeded") in events
    final = store.get(book.id)
    assert final is not None and final.progress is not None
    assert final.progress.pieces_done == final.progress.pieces_total
