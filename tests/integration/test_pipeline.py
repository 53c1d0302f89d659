"""End to end through real parts: HTTP API → Redis → Celery worker process with the
bundled Piper voice → file storage or moto's S3 server → job status → download."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from tests.conftest import (
    API_KEYS,
    ROOT,
    ApiServer,
    RedisServer,
    fleet_settings,
    serving,
)
from tests.helpers.jobs import wait_terminal
from tests.helpers.speech import SENTENCE, check_speech


@pytest.fixture(scope="module")
def fleet(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    """API and one worker process sharing a file store, for the whole module."""
    settings = fleet_settings(redis_server, tmp_path_factory.mktemp("pipeline"))
    with serving(settings, settings.home.parent / "worker.log", concurrency=1) as (api, _):
        yield api


@pytest.mark.parametrize(
    ("fmt", "rate"), [("wav", 22050), ("flac", 16000), ("ogg", 48000), ("mp3", 24000)]
)
def test_text_becomes_speech_in_the_requested_format(fleet: ApiServer, fmt: str, rate: int) -> None:
    with fleet.client() as http:
        job = http.post(
            "/v1/jobs", json={"text": SENTENCE, "format": fmt, "sample_rate": rate}
        ).json()
        done = wait_terminal(http, job["id"])
        assert done["status"] == "succeeded", done
        download = http.get(f"/v1/jobs/{job['id']}/audio")
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("audio/")
    audio = done["audio"]
    assert isinstance(audio, dict)
    assert audio["url"] == f"/v1/jobs/{job['id']}/audio"
    assert (audio["format"], audio["sample_rate"], audio["bytes"]) == (
        fmt,
        rate,
        len(download.content),
    )
    import hashlib

    assert audio["sha256"] == hashlib.sha256(download.content).hexdigest()
    duration = check_speech(download.content, fmt, rate, SENTENCE)
    assert audio["duration_s"] == pytest.approx(duration, abs=0.15)
    assert done["attempts"] == 1 and done["started_at"] and done["finished_at"]


def test_speed_shortens_the_audio(fleet: ApiServer) -> None:
    with fleet.client() as http:
        normal = http.post("/v1/jobs", json={"text": SENTENCE}).json()
        fast = http.post("/v1/jobs", json={"text": SENTENCE, "speed": 2.0}).json()
        normal_s = wait_terminal(http, normal["id"])["audio"]["duration_s"]  # type: ignore[index]
        fast_s = wait_terminal(http, fast["id"])["audio"]["duration_s"]  # type: ignore[index]
    # Piper's duration noise (noise_w) is on, so the ratio to the ideal 0.5 varies a little.
    assert 0.3 < fast_s / normal_s < 0.75


def test_unpronounceable_text_fails_with_invalid_text(fleet: ApiServer) -> None:
    with fleet.client() as http:
        job = http.post("/v1/jobs", json={"text": "?!"}).json()
        done = wait_terminal(http, job["id"])
    assert done["status"] == "failed" and done["attempts"] == 1
    assert done["error"]["code"] == "invalid_text"  # type: ignore[index]


def test_cli_say_writes_a_wav(fleet: ApiServer, tmp_path: Path) -> None:
    out = tmp_path / "hello.wav"
    env = {**os.environ, "TTSFLEET_API_URL": fleet.url, "TTSFLEET_API_KEY": API_KEYS["acme"]}
    result = subprocess.run(
        [sys.executable, "-m", "fleet", "say", "Hello world", "-o", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "wav at 22050 Hz" in result.stdout
    check_speech(out.read_bytes(), "wav", 22050, "Hello world")


@pytest.fixture(scope="module")
def s3_fleet(
    redis_server: RedisServer, s3_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ApiServer, str]]:
    tmp = tmp_path_factory.mktemp("pipeline-s3")
    bucket = "ttsfleet-audio"
    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(Bucket=bucket)
    # Its own database: the file-storage worker of this module must not take its jobs.
    settings = fleet_settings(
        redis_server, tmp, db=1, storage_url=f"s3://{bucket}/tts", s3_endpoint_url=s3_server,
        max_text_chars=200, unit_chars=150,  # a few sentences make a book
    )  # fmt: skip
    with serving(settings, tmp / "worker.log", concurrency=1) as (api, _):
        yield api, bucket


def test_s3_storage_holds_the_object_and_audio_redirects_to_it(
    s3_fleet: tuple[ApiServer, str], s3_server: str
) -> None:
    api, bucket = s3_fleet
    with api.client() as http:
        job = http.post("/v1/jobs", json={"text": SENTENCE, "format": "flac"}).json()
        done = wait_terminal(http, job["id"])
        assert done["status"] == "succeeded", done
        redirect = http.get(f"/v1/jobs/{job['id']}/audio")
    assert redirect.status_code == 307
    location = redirect.headers["location"]
    assert location.startswith(s3_server) and "Signature" in location
    data = httpx.get(location).content
    check_speech(data, "flac", 22050, SENTENCE)
    s3 = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    head = s3.head_object(Bucket=bucket, Key=f"tts/acme/{job['id']}.flac")
    assert head["ContentType"] == "audio/flac" and head["ContentLength"] == len(data)


def test_a_book_on_s3_is_uploaded_from_its_spool_file_and_its_parts_go(
    s3_fleet: tuple[ApiServer, str], s3_server: str
) -> None:
    api, bucket = s3_fleet
    text = " ".join([SENTENCE] * 6)
    with api.client() as http:
        job = http.post("/v1/jobs", json={"text": text, "format": "mp3"}).json()
        done = wait_terminal(http, job["id"], timeout=120)
        assert done["status"] == "succeeded", done
        progress = done["progress"]
        assert progress["pieces_done"] == progress["pieces_total"] >= 2  # past max_text_chars
        data = httpx.get(http.get(f"/v1/jobs/{job['id']}/audio").headers["location"]).content
    check_speech(data, "mp3", 22050, text)
    assert hashlib.sha256(data).hexdigest() == done["audio"]["sha256"]
    assert len(data) == done["audio"]["bytes"]
    s3 = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    mine = s3.list_objects_v2(Bucket=bucket, Prefix=f"tts/acme/{job['id']}")["Contents"]
    assert [o["Key"] for o in mine] == [f"tts/acme/{job['id']}.mp3"]  # no part is left
