"""A real batching worker: `ttsfleet worker` with the transformers engine picks the threads
pool and one batcher; jobs submitted together share forward passes, one bad text fails
alone, long texts come back as one file; a CUDA device that is not there fails fast."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import soundfile

from bench.vits import build_random_vits
from tasks.settings import ModelSpec, Settings, VoiceSpec
from tasks.text import split_text
from tests.conftest import (
    ROOT,
    ApiServer,
    RedisServer,
    WorkerProcess,
    fleet_settings,
    serving,
    settings_env,
)
from tests.helpers.jobs import wait_terminal

MODEL = "tiny-vits"
VOICE = "tiny"


@pytest.fixture(scope="module")
def vits_settings(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    tmp = tmp_path_factory.mktemp("batching")
    checkpoint = build_random_vits(tmp / "checkpoint")
    return fleet_settings(
        redis_server,
        tmp,
        db=2,
        models={
            MODEL: ModelSpec(
                engine="transformers",
                options={
                    "checkpoint": str(checkpoint),
                    "noise_scale": 0,
                    "noise_scale_duration": 0,
                },
                voices={VOICE: VoiceSpec(language="en", sample_rate=16000)},
            )
        },
        batch_max_size=8,
        batch_max_wait_ms=150,
        result_cache=False,
    )


@pytest.fixture(scope="module")
def batching_fleet(
    vits_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ApiServer, WorkerProcess]]:
    log = tmp_path_factory.mktemp("batching-log") / "worker.log"
    ready_file = log.parent / "ready"
    options = {"concurrency": 0, "extra": ["--ready-file", str(ready_file)]}
    with serving(vits_settings, log, **options) as (api, worker):
        assert ready_file.is_file()  # what a readiness probe tests for
        yield api, worker


def batch_sizes(log: Path) -> list[int]:
    return [int(n) for n in re.findall(r"batch of (\d+) items", log.read_text())]


def test_worker_picks_threads_pool_and_batches_concurrent_jobs(
    batching_fleet: tuple[ApiServer, WorkerProcess],
) -> None:
    api, worker = batching_fleet
    text = worker.log.read_text()
    assert "tiny-vits-cpu@" in text and "(thread" in text.lower()
    texts = [f"job number {i} says hello." for i in range(16)]
    with api.client() as http, ThreadPoolExecutor(16) as pool:
        jobs = list(
            pool.map(
                lambda t: http.post("/v1/jobs", json={"text": t, "voice": VOICE}).json(), texts
            )
        )
        done = [wait_terminal(http, job["id"]) for job in jobs]
    assert all(d["status"] == "succeeded" for d in done), done
    sizes = batch_sizes(worker.log)
    assert sum(sizes) >= 16 and max(sizes) > 1, sizes


def test_bad_text_fails_alone_while_batch_mates_succeed(
    batching_fleet: tuple[ApiServer, WorkerProcess],
) -> None:
    api, _ = batching_fleet
    texts = ["first good one.", "\u2603\u2603\u2603", "second good one.", "third good one."]
    with api.client() as http, ThreadPoolExecutor(4) as pool:
        jobs = list(
            pool.map(
                lambda t: http.post("/v1/jobs", json={"text": t, "voice": VOICE}).json(), texts
            )
        )
        done = [wait_terminal(http, job["id"]) for job in jobs]
    assert [d["status"] for d in done] == ["succeeded", "failed", "succeeded", "succeeded"]
    assert done[1]["error"]["code"] == "invalid_text"  # type: ignore[index]


def test_long_text_comes_back_as_one_file(batching_fleet: tuple[ApiServer, WorkerProcess]) -> None:
    api, worker = batching_fleet
    text = " ".join(f"this is sentence {i} of a long story, told slowly." for i in range(24))
    before = len(batch_sizes(worker.log))
    with api.client() as http:
        job = http.post("/v1/jobs", json={"text": text, "voice": VOICE, "format": "flac"}).json()
        done = wait_terminal(http, job["id"])
        assert done["status"] == "succeeded", done
        data = http.get(f"/v1/jobs/{job['id']}/audio").content
    info = soundfile.info(io.BytesIO(data))
    assert info.format == "FLAC" and info.samplerate == 16000
    # Its pieces went through the engine in speaking order, in batches of 1, 2, 4, ...: the
    # first alone, so it can be heard early (worker.pieces), the rest batched.
    sizes = batch_sizes(worker.log)[before:]
    assert sizes[:2] == [1, 2] and sum(sizes) == len(split_text(text)) >= 4, sizes
    # The batcher thread's line names the batch and the job whose pieces it held.
    lines = [line for line in worker.log.read_text().splitlines() if job["id"] in line]
    assert any("batch of" in line and "batch_id=" in line for line in lines), lines


@pytest.mark.parametrize(
    ("engine", "message"),
    [("transformers", "torch sees no CUDA device"), ("piper", "no CUDA provider")],
)
def test_cuda_worker_without_cuda_fails_fast(
    vits_settings: Settings, engine: str, message: str
) -> None:
    settings = (
        vits_settings if engine == "transformers" else Settings(redis_url=vits_settings.redis_url)
    )
    env = {**settings_env(settings), "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        [sys.executable, "-m", "fleet", "worker", "--device", "cuda:0"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
