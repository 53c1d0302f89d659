"""A job's audio streamed while it is made, and its timestamps once it is done: the real
API, dispatcher and worker processes over the session's Redis, tiny test engines."""

from __future__ import annotations

import io
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
import redis
import soundfile
import srt
import webvtt

from tasks import keys, timestamps
from tasks.jobs import JobStatus
from tasks.settings import ModelSpec, Settings, VoiceSpec
from tasks.store import JobStore
from tasks.timestamps import Granularity, TimedText, Timestamps
from tests.conftest import (
    API_KEYS,
    ApiServer,
    RedisServer,
    WorkerProcess,
    fleet_settings,
    wait_until,
)
from tests.helpers import audio_probe
from tests.helpers.jobs import AUDIO, make_job

VOICE = "tone"
# Eleven sentences, about 900 characters: four pieces of at most 300.
TEXT = " ".join(
    f"Sentence number {i} of this chapter goes on for a little while, and then it stops."
    for i in range(11)
)


class Fleet:
    def __init__(self, redis_server: RedisServer, tmp: Path, engine: str, **options: Any) -> None:
        url = redis_server.url.rsplit("/", 1)[0] + "/7"
        with redis.Redis.from_url(url) as client:
            client.flushdb()
        self.settings: Settings = fleet_settings(
            redis_server, tmp, db=7, result_cache=False, rate_limit_per_s=0,
            models={"m": ModelSpec(engine=f"tests.engines:{engine}", options=options,
                                   voices={VOICE: VoiceSpec(language="en", sample_rate=16000)})},
        )  # fmt: skip
        self.tmp = tmp
        self.api = ApiServer(self.settings)
        self.api.start()
        self.worker: WorkerProcess | None = None
        self.http = self.api.client()

    def start_worker(self) -> None:
        self.worker = WorkerProcess(self.settings, self.tmp / "worker.log")
        self.worker.wait_ready()

    def submit(self, text: str = TEXT, **fields: Any) -> str:
        response = self.http.post("/v1/jobs", json={"text": text, "voice": VOICE, **fields})
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    def streamed(self, fmt: str) -> tuple[str, str, bytes]:
        """A job in `fmt` streamed whole by a worker: its Content-Type and bytes, once the
        job succeeded."""
        self.start_worker()
        job_id = self.submit(format=fmt)
        with self.http.stream("GET", f"/v1/jobs/{job_id}/audio/stream") as response:
            content_type, data = response.headers["content-type"], response.read()
        assert self.wait(job_id)["status"] == "succeeded"
        return job_id, content_type, data

    def wait(self, job_id: str) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            job = self.http.get(f"/v1/jobs/{job_id}").json()
            return job if job["status"] in ("succeeded", "failed", "canceled") else None

        return dict(wait_until(done, timeout=60))

    def stop(self) -> None:
        self.http.close()
        if self.worker is not None:
            self.worker.stop()
        self.api.stop()


@pytest.fixture
def tone_fleet(redis_server: RedisServer, tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(redis_server, tmp_path, "ToneEngine")
    yield fleet
    fleet.stop()


@pytest.fixture
def slow_fleet(redis_server: RedisServer, tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(redis_server, tmp_path, "SlowEngine", seconds=0.5)
    yield fleet
    fleet.stop()


def test_timestamps_once_succeeded_as_json_vtt_and_srt(tone_fleet: Fleet) -> None:
    job_id = tone_fleet.submit()
    early = tone_fleet.http.get(f"/v1/jobs/{job_id}/timestamps")
    assert early.status_code == 409 and early.json()["error"]["code"] == "job_not_finished"
    tone_fleet.start_worker()
    job = tone_fleet.wait(job_id)
    assert job["status"] == "succeeded"

    found = tone_fleet.http.get(f"/v1/jobs/{job_id}/timestamps").json()
    assert found["granularity"] == "sentence"
    items = found["items"]
    assert " ".join(item["text"] for item in items) == TEXT
    assert items[0]["start_s"] == 0
    assert items[-1]["end_s"] == pytest.approx(job["audio"]["duration_s"], abs=0.002)
    for item, after in itertools.pairwise(items):
        assert item["start_s"] < item["end_s"] <= after["start_s"]

    vtt = tone_fleet.http.get(f"/v1/jobs/{job_id}/timestamps", params={"format": "vtt"})
    assert vtt.headers["content-type"].startswith("text/vtt")
    assert len(webvtt.from_buffer(io.StringIO(vtt.text))) == len(items)
    subrip = tone_fleet.http.get(f"/v1/jobs/{job_id}/timestamps", params={"format": "srt"})
    assert subrip.headers["content-type"].startswith("application/x-subrip")
    cues = list(srt.parse(subrip.text))
    assert [c.end.total_seconds() for c in cues] == [i["end_s"] for i in items]

    bad = tone_fleet.http.get(f"/v1/jobs/{job_id}/timestamps", params={"format": "ass"})
    assert bad.status_code == 422
    # The tone engine measures no words: asked for them, the API says so, never guesses.
    asked = tone_fleet.http.get(f"/v1/jobs/{job_id}/timestamps", params={"granularity": "word"})
    assert asked.status_code == 422 and "no word timings" in asked.json()["error"]["message"]
    sentences = {"granularity": "sentence"}
    assert tone_fleet.http.get(f"/v1/jobs/{job_id}/timestamps", params=sentences).json() == found
    with tone_fleet.api.client("globex") as other:
        assert other.get(f"/v1/jobs/{job_id}/timestamps").status_code == 404


# What an engine that measures words (transformers) stores for a job.
WORDS = Timestamps(
    granularity=Granularity.WORD,
    items=[TimedText(text=t, start_s=s, end_s=e) for t, s, e in [
        ("Hello", 0.0, 0.4), ("there.", 0.45, 0.9), ("Bye", 1.0, 1.3), ("now!", 1.3, 1.8)]],
)  # fmt: skip


def succeeded_with(store: JobStore, timings: Timestamps) -> str:
    """A succeeded job of acme's with these timings, as a worker records them."""
    job = make_job(status=JobStatus.SUCCEEDED, audio=AUDIO)
    store.create(job)
    timestamps.save(store.redis, job.storage_key, timings, store.ttl_s)
    return job.id


def test_timestamps_in_the_granularity_asked_for(api: ApiServer, store: JobStore) -> None:
    job_id = succeeded_with(store, WORDS)
    words = [("Hello", 0.0, 0.4), ("there.", 0.45, 0.9), ("Bye", 1.0, 1.3), ("now!", 1.3, 1.8)]
    with api.client() as http:

        def items(**params: str) -> list[tuple[str, float, float]]:
            found = http.get(f"/v1/jobs/{job_id}/timestamps", params=params).json()
            return [(i["text"], i["start_s"], i["end_s"]) for i in found["items"]]

        assert items() == items(granularity="word") == words
        assert items(granularity="sentence") == [("Hello there.", 0.0, 0.9), ("Bye now!", 1.0, 1.8)]
        vtt = http.get(f"/v1/jobs/{job_id}/timestamps?format=vtt&granularity=sentence").text
        assert [c.text for c in webvtt.from_buffer(io.StringIO(vtt))] == [
            "Hello there.",
            "Bye now!",
        ]
        subrip = http.get(f"/v1/jobs/{job_id}/timestamps?format=srt&granularity=word").text
        assert [c.content for c in srt.parse(subrip)] == [w for w, _, _ in words]


def test_word_timings_are_never_made_up(api: ApiServer, store: JobStore) -> None:
    sentences = Timestamps(granularity=Granularity.SENTENCE, items=WORDS.items[:2])
    job_id = succeeded_with(store, sentences)
    with api.client() as http:
        asked = http.get(f"/v1/jobs/{job_id}/timestamps", params={"granularity": "word"})
        same = http.get(f"/v1/jobs/{job_id}/timestamps", params={"granularity": "sentence"})
    assert asked.status_code == 422 and asked.json()["error"]["code"] == "validation_error"
    assert "no word timings" in asked.json()["error"]["message"]
    assert same.json() == sentences.model_dump(mode="json")


@pytest.mark.parametrize(
    ("query", "allowed"),
    [("granularity=bogus", "'word' or 'sentence'"), ("granularity=WORD", "'word' or 'sentence'"),
     ("granularity=", "'word' or 'sentence'"), ("format=bogus", "'json', 'vtt' or 'srt'"),
     ("format=JSON", "'json', 'vtt' or 'srt'")],
)  # fmt: skip
def test_an_unknown_value_is_422_naming_the_allowed_ones(
    api: ApiServer, store: JobStore, query: str, allowed: str
) -> None:
    job_id = succeeded_with(store, WORDS)
    with api.client() as http:
        response = http.get(f"/v1/jobs/{job_id}/timestamps?{query}")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error" and allowed in error["message"], error


def stored_pcm(fleet: Fleet, job_id: str) -> np.ndarray:
    audio = fleet.http.get(f"/v1/jobs/{job_id}/audio")
    samples, _ = soundfile.read(io.BytesIO(audio.content), dtype="int16")
    return np.asarray(samples, dtype=np.int32)


def test_a_queued_job_streams_piece_by_piece_and_ends_with_it(slow_fleet: Fleet) -> None:
    job_id = slow_fleet.submit()
    chunks: list[bytes] = []
    status_at_first: list[str] = []
    progress_seen: list[dict[str, Any] | None] = []

    def take(response: httpx.Response, client: httpx.Client) -> None:
        for chunk in response.iter_raw():
            job = client.get(f"/v1/jobs/{job_id}").json()
            if not chunks:
                status_at_first.append(job["status"])
            progress_seen.append(job["progress"])
            chunks.append(chunk)

    def listen() -> None:
        with httpx.Client(base_url=slow_fleet.api.url, headers=slow_fleet.http.headers,
                          timeout=60) as client:  # fmt: skip
            for _ in range(20):  # the worker starts late: ask again while there is no audio
                with client.stream("GET", f"/v1/jobs/{job_id}/audio/stream") as response:
                    if response.status_code != 409:
                        assert response.headers["content-type"] == "audio/wav"
                        take(response, client)
                        return

    listener = threading.Thread(target=listen)
    listener.start()
    time.sleep(0.3)  # the listener is waiting on a queued job (nothing asserted on time)
    assert slow_fleet.http.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"
    slow_fleet.start_worker()
    listener.join(60)
    assert not listener.is_alive()
    job = slow_fleet.wait(job_id)
    assert job["status"] == "succeeded"
    # The first audio came while three more pieces of half a second each were still to make.
    assert status_at_first == ["running"]
    # Progress moved piece by piece (groups of 1, 2, 1) and ends whole.
    assert any(p is not None and 0 < p["pieces_done"] < 4 for p in progress_seen)
    assert job["progress"]["pieces_done"] == job["progress"]["pieces_total"] == 4
    assert job["progress"]["audio_s"] == pytest.approx(job["audio"]["duration_s"], abs=0.002)

    data = b"".join(chunks)
    assert data[:4] == b"RIFF" and data[40:44] == b"\xff\xff\xff\xff"
    streamed = np.frombuffer(data[44:], dtype="<i2").astype(np.int32)
    stored = stored_pcm(slow_fleet, job_id)
    assert len(streamed) == len(stored)
    assert int(np.abs(streamed - stored).max()) <= 1

    # Finished: the stream is replayed while it lingers, then the stored file is pointed to.
    again = slow_fleet.http.get(f"/v1/jobs/{job_id}/audio/stream")
    assert again.status_code == 200 and again.content == data
    with redis.Redis.from_url(slow_fleet.settings.redis_url) as client:
        client.delete(keys.audio_stream_key(job_id))
    gone = slow_fleet.http.get(f"/v1/jobs/{job_id}/audio/stream", follow_redirects=False)
    assert gone.status_code == 307 and gone.headers["location"] == f"/v1/jobs/{job_id}/audio"
    with slow_fleet.api.client("globex") as other:
        assert other.get(f"/v1/jobs/{job_id}/audio/stream").status_code == 404


def test_a_job_with_no_audio_yet_is_409_after_wait_s(tone_fleet: Fleet) -> None:
    job_id = tone_fleet.submit()  # no worker: it stays queued
    response = tone_fleet.http.get(f"/v1/jobs/{job_id}/audio/stream", params={"wait_s": 0.5})
    assert response.status_code == 409 and response.json()["error"]["code"] == "job_not_finished"
    assert response.headers["retry-after"]
    too_long = tone_fleet.http.get(f"/v1/jobs/{job_id}/audio/stream", params={"wait_s": 9})
    assert too_long.status_code == 422


def test_a_canceled_job_closes_its_stream(tone_fleet: Fleet) -> None:
    job_id = tone_fleet.submit()
    assert tone_fleet.http.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
    response = tone_fleet.http.get(f"/v1/jobs/{job_id}/audio/stream")
    assert response.status_code == 409 and response.json()["error"]["code"] == "job_not_finished"


def test_mp3_jobs_stream_mp3(tone_fleet: Fleet) -> None:
    _, content_type, data = tone_fleet.streamed("mp3")
    assert content_type == "audio/mpeg"
    assert data[:2] == b"\xff\xf3" or data[:3] == b"ID3"


def test_opus_jobs_stream_one_ogg_opus_stream_of_the_stored_audio(tone_fleet: Fleet) -> None:
    """The API pages the worker's Opus packets (api.ogg): ffmpeg decodes the stream to the
    stored file's audio, plus at most the last packet's padding (the stream's end is not
    trimmed), and the two encodes of it (libsndfile's file, PyAV's packets) agree."""
    job_id, content_type, data = tone_fleet.streamed("opus")
    assert content_type == "audio/ogg; codecs=opus"
    stored = tone_fleet.http.get(f"/v1/jobs/{job_id}/audio").content
    assert data[:4] == b"OggS" and audio_probe.probe(data).codec == "opus"
    streamed, kept = audio_probe.decode(data), audio_probe.decode(stored)
    assert 0 <= len(streamed) - len(kept) < 960
    a, b = streamed[: len(kept)].astype(np.float64), kept.astype(np.float64)
    assert float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b))) > 0.9


def _speech_stream(
    fleet: Fleet, fmt: str, after_first: Callable[[str], None] = lambda job_id: None
) -> tuple[str, str, bytes]:
    """`POST /v1/audio/speech` with `stream_format: audio` through the `openai` SDK: the job
    id, the Content-Type and the bytes; `after_first(job_id)` runs when the first arrive."""
    sdk = openai.OpenAI(
        base_url=fleet.api.url + "/v1", api_key=API_KEYS["acme"], max_retries=0, timeout=60
    )
    chunks: list[bytes] = []
    with (
        sdk,
        sdk.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input=TEXT, response_format=fmt,  # type: ignore[arg-type]
            stream_format="audio",
        ) as response,
    ):  # fmt: skip
        job_id = response.headers["x-job-id"]
        for chunk in response.iter_bytes():
            if not chunks:
                after_first(job_id)
            chunks.append(chunk)
    return job_id, response.headers["content-type"], b"".join(chunks)


def test_openai_speech_with_stream_format_audio_streams_before_its_job_ends(
    slow_fleet: Fleet,
) -> None:
    """mp3 (OpenAI's default), wav, pcm and opus: the first bytes come while the job still
    runs, the response ends once it is recorded succeeded, and the bytes are its stored
    audio."""
    slow_fleet.start_worker()
    for fmt in ("mp3", "wav", "pcm", "opus"):
        status_at_first: list[str] = []

        def look(job_id: str) -> None:
            status_at_first.append(slow_fleet.http.get(f"/v1/jobs/{job_id}").json()["status"])

        job_id, content_type, data = _speech_stream(slow_fleet, fmt, look)
        # Three more pieces of half a second each were still to make at the first bytes.
        assert status_at_first == ["running"], fmt
        job = slow_fleet.http.get(f"/v1/jobs/{job_id}").json()
        assert job["status"] == "succeeded", fmt  # recorded before the response ended
        stored = slow_fleet.http.get(f"/v1/jobs/{job_id}/audio").content
        assert content_type == {"mp3": "audio/mpeg", "wav": "audio/wav", "pcm": "audio/pcm",
                                "opus": "audio/ogg; codecs=opus"}[fmt]  # fmt: skip
        if fmt == "opus":
            # One more encode of the same audio, its end untrimmed (the last packet's pad).
            extra = len(audio_probe.decode(data)) - len(audio_probe.decode(stored))
            assert 0 <= extra < 960
            continue
        if fmt == "mp3":
            # The stream's first frame is an empty Info tag where the stored file has LAME's
            # (its length is unknown then), so a decoder keeps what that tag trims: the tag
            # frame itself (decoded as silence), LAME's delay and the last frame's padding (MPEG-2: 576, 1105,
            # under 576 samples). The stored audio is all there, in between.
            streamed, kept = audio_probe.decode(data), audio_probe.decode(stored)
            extra = len(streamed) - len(kept)
            assert 0 < extra < 576 + 1105 + 576
            assert any(
                np.array_equal(streamed[at : at + len(kept)], kept) for at in range(extra + 1)
            )
            continue
        raw = {"format": "RAW", "subtype": "PCM_16", "samplerate": 24000, "channels": 1}
        options: dict[str, Any] = raw if fmt == "pcm" else {}
        streamed_wave, rate = soundfile.read(io.BytesIO(data), dtype="int16", **options)
        stored_wave, stored_rate = soundfile.read(io.BytesIO(stored), dtype="int16", **options)
        assert rate == stored_rate == job["audio"]["sample_rate"]
        assert len(streamed_wave) == len(stored_wave) > 0
        # Within one 16-bit step: the stored file is resampled (pcm: to OpenAI's 24 kHz) and
        # rounded in one go, the stream stretch by stretch.
        diff = np.abs(streamed_wave.astype(np.int32) - stored_wave.astype(np.int32))
        assert int(diff.max()) <= 1


def test_openai_speech_stream_waits_for_a_queued_job(tone_fleet: Fleet) -> None:
    """No worker yet: the request waits for the job's first audio (up to the speech
    timeout, test_openai) and streams once a worker starts."""
    found: list[tuple[str, str, bytes]] = []
    listener = threading.Thread(target=lambda: found.append(_speech_stream(tone_fleet, "wav")))
    listener.start()
    queued = wait_until(
        lambda: tone_fleet.http.get("/v1/jobs", params={"status": "queued"}).json()["jobs"]
    )
    time.sleep(0.3)  # the request is waiting on a queued job (nothing asserted on time)
    tone_fleet.start_worker()
    listener.join(60)
    assert not listener.is_alive()
    job_id, content_type, data = found[0]
    assert job_id == queued[0]["id"] and content_type == "audio/wav"
    assert data[40:44] == b"\xff\xff\xff\xff"  # streamed: the WAV's length was open
    streamed, _ = soundfile.read(io.BytesIO(data), dtype="int16")
    stored = stored_pcm(tone_fleet, job_id)
    assert len(streamed) == len(stored) and int(np.abs(streamed - stored).max()) <= 1


@pytest.fixture
def failing_fleet(redis_server: RedisServer, tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(redis_server, tmp_path, "RaisingEngine", trigger="Kaboom")
    yield fleet
    fleet.stop()


def test_openai_speech_stream_of_a_job_that_fails_midway_just_ends(
    failing_fleet: Fleet,
) -> None:
    """The status line went out with the first piece: a job failing on its last piece ends
    the body early (no trailers), once it is recorded failed; its record tells why."""
    failing_fleet.start_worker()
    text = TEXT + " Kaboom."
    sdk = openai.OpenAI(
        base_url=failing_fleet.api.url + "/v1", api_key=API_KEYS["acme"], max_retries=0,
        timeout=60,
    )  # fmt: skip
    with (
        sdk,
        sdk.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input=text, response_format="wav", stream_format="audio"
        ) as response,
    ):
        assert response.status_code == 200
        data = response.read()
    job = failing_fleet.http.get(f"/v1/jobs/{response.headers['x-job-id']}").json()
    assert job["status"] == "failed" and job["error"]["code"] == "engine_error"
    # The three pieces before the failing one (0.2 s each at 16 kHz, less any seam held back
    # for the next), and nothing after.
    assert data[:4] == b"RIFF" and 2 * 3200 < (len(data) - 44) // 2 <= 3 * 3200
