"""`loudness_lufs: -16` through the fleet (API, dispatcher, a real worker and voice): every
output of 20 corpus sentences, at two speeds and with up to two voices, measures -16 +- 0.5
LUFS with true peak at most -1 dBTP on ffmpeg's own EBU R128 meter."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from client.client import Client
from tests.conftest import API_KEYS, ROOT, ApiServer, RedisServer, fleet_settings, serving
from tests.helpers.audio_probe import loudness

SENTENCES = ROOT.parent / "shared" / "bench" / "sentences.txt"
TARGET_LUFS = -16.0
SPEEDS = (1.0, 1.4)


@pytest.fixture(scope="module")
def fleet(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    settings = fleet_settings(redis_server, tmp_path_factory.mktemp("loudness"), db=4)
    with serving(settings, settings.home.parent / "worker.log", concurrency=1) as (api, _):
        yield api


def test_loudness_target_holds_for_every_sentence_speed_and_voice(fleet: ApiServer) -> None:
    if not SENTENCES.is_file():
        pytest.skip(f"the corpus {SENTENCES} is not beside this checkout")
    sentences = [s for s in SENTENCES.read_text().splitlines() if s.strip()][:20]
    assert len(sentences) == 20
    with Client(fleet.url, API_KEYS["acme"], timeout=120) as client:
        voices = [v["id"] for v in client.voices()][:2]
        requests = [
            {"text": text, "voice": voice, "speed": speed, "loudness_lufs": TARGET_LUFS}
            for text in sentences
            for speed in SPEEDS
            for voice in voices
        ]
        jobs = client.submit_batch(requests)
        measured = []
        for job in jobs:
            done = client.wait(job["id"], timeout=300)
            assert done["status"] == "succeeded", done
            assert done["loudness_lufs"] == TARGET_LUFS
            measured.append(loudness(client.download(job["id"])))
    levels = [m.integrated_lufs for m in measured]
    peaks = [m.true_peak_dbtp for m in measured]
    print(
        f"{len(measured)} outputs: {min(levels):.2f} to {max(levels):.2f} LUFS, "
        f"true peak {min(peaks):.2f} to {max(peaks):.2f} dBTP"
    )
    off = [(r, m) for r, m in zip(requests, measured, strict=True)
           if abs(m.integrated_lufs - TARGET_LUFS) > 0.5 or m.true_peak_dbtp > -1.0]  # fmt: skip
    assert not off, off


def test_without_loudness_the_engine_level_stays(fleet: ApiServer) -> None:
    with Client(fleet.url, API_KEYS["acme"], timeout=120) as client:
        plain = client.synthesize("The meeting has been moved to half past three.", timeout=120)
        quiet = client.synthesize(
            "The meeting has been moved to half past three.", timeout=120, loudness_lufs=-30
        )
        plain_level = loudness(client.download(plain["id"])).integrated_lufs
        quiet_level = loudness(client.download(quiet["id"])).integrated_lufs
    assert plain["loudness_lufs"] is None and quiet["loudness_lufs"] == -30
    assert quiet_level == pytest.approx(-30, abs=0.5)
    assert abs(plain_level - quiet_level) > 3  # the engine's own level is not -30
