"""What a synthesized answer must sound like: decodes, plausible length, not silence."""

from __future__ import annotations

import io

import numpy as np
import soundfile

SENTENCE = "The meeting has been moved to half past three in the small conference room."
SOUNDFILE_FORMAT = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG", "mp3": "MP3"}


def check_speech(data: bytes, fmt: str, rate: int, text: str) -> float:
    """The bytes decode as `fmt` at `rate`, last plausibly long for `text`, and are not silence."""
    info = soundfile.info(io.BytesIO(data))
    assert info.format == SOUNDFILE_FORMAT[fmt] and info.samplerate == rate and info.channels == 1
    samples, _ = soundfile.read(io.BytesIO(data))
    duration = len(samples) / rate
    # English speech runs at roughly 10-20 characters per second.
    assert len(text) / 25 < duration < len(text) / 6, duration
    assert float(np.sqrt(np.mean(np.square(samples)))) > 0.02
    return duration
