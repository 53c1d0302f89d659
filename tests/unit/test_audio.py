"""Encoding: every format decodes back at the requested rate with the same duration."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile

from tasks.jobs import AudioFormat
from worker.audio import encode
from worker.engines import Audio


def tone(seconds: float = 1.0, rate: int = 22050) -> Audio:
    t = np.arange(int(seconds * rate)) / rate
    return Audio(samples=(0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sample_rate=rate)


@pytest.mark.parametrize("fmt", list(AudioFormat))
@pytest.mark.parametrize("rate", [8000, 22050, 48000])
def test_encoded_audio_decodes_at_requested_rate(fmt: AudioFormat, rate: int) -> None:
    encoded = encode(tone(), fmt, rate)
    data, decoded_rate = soundfile.read(io.BytesIO(encoded.data))
    assert decoded_rate == rate
    assert encoded.duration_s == pytest.approx(1.0, abs=0.01)
    # Lossy codecs pad a little; the content is still about one second of tone.
    assert len(data) / rate == pytest.approx(1.0, abs=0.1)
    assert np.sqrt(np.mean(np.square(data))) > 0.2
    assert len(encoded.sha256) == 64


def test_clipping_input_is_clamped() -> None:
    loud = Audio(samples=np.full(1000, 3.0, dtype=np.float32), sample_rate=8000)
    data, _ = soundfile.read(io.BytesIO(encode(loud, AudioFormat.WAV, 8000).data))
    assert np.max(np.abs(data)) <= 1.0
