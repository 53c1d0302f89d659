"""Stream containers: bytes sent stretch by stretch decode as one file."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from tasks.jobs import AudioFormat
from worker.stream import StreamEncoder


def tone(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate), dtype=np.float32) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def stretches(encoder: StreamEncoder, rate: int) -> bytes:
    parts = [encoder.encode(tone(0.3, rate), rate) for _ in range(4)]
    parts.append(encoder.encode(np.zeros(0, np.float32), rate, last=True))
    return b"".join(parts)


def test_open_length_wav_decodes_to_every_sample() -> None:
    data = stretches(StreamEncoder(AudioFormat.WAV, 16000), 16000)
    assert data[:4] == b"RIFF" and data[40:44] == b"\xff\xff\xff\xff"
    pcm = np.frombuffer(data[44:], dtype="<i2")
    expected = np.concatenate([tone(0.3, 16000)] * 4)
    np.testing.assert_allclose(pcm / 32767.0, expected, atol=1 / 32767)


def test_resampled_wav_has_the_jobs_rate_and_length() -> None:
    data = stretches(StreamEncoder(AudioFormat.WAV, 24000), 16000)
    assert int.from_bytes(data[24:28], "little") == 24000
    assert abs(len(data[44:]) // 2 - int(1.2 * 24000)) <= 2


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="decodes with ffmpeg")
def test_mp3_stretches_are_one_stream() -> None:
    """Decoded by ffmpeg as a player would (libsndfile's reader trusts a frame count that a
    stream cannot know in advance): every stretch is there, plus the encoder's delay."""
    data = stretches(StreamEncoder(AudioFormat.MP3, 22050), 22050)
    decoded = subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "mp3", "-i", "-", "-f", "s16le", "-"],
        input=data, capture_output=True, check=True,
    ).stdout  # fmt: skip
    assert 0 <= len(decoded) // 2 - int(1.2 * 22050) < 3 * 1152


def test_formats_that_cannot_stream_go_out_as_wav() -> None:
    assert StreamEncoder(AudioFormat.FLAC, 16000).format is AudioFormat.WAV


def test_pcm_streams_bare_samples() -> None:
    data = stretches(StreamEncoder(AudioFormat.PCM, 16000), 16000)
    pcm = np.frombuffer(data, dtype="<i2")
    np.testing.assert_allclose(
        pcm / 32767.0, np.concatenate([tone(0.3, 16000)] * 4), atol=1 / 32767
    )


def test_loudness_is_met_stretch_by_stretch() -> None:
    from worker.loudness import integrated_lufs

    encoder = StreamEncoder(AudioFormat.PCM, 16000, loudness_lufs=-20.0)
    for level in (0.05, 0.4):  # a quiet stretch and a loud one come out alike
        quiet = level * tone(1.0, 16000) / 0.3
        out = np.frombuffer(encoder.encode(quiet.astype(np.float32), 16000), dtype="<i2")
        assert integrated_lufs(out / 32767.0, 16000) == pytest.approx(-20.0, abs=0.5)
