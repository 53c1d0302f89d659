"""From engine samples to the bytes a client downloads: resample, encode, fingerprint."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np
import soundfile
import soxr

from tasks.jobs import AudioFormat
from worker.engines import Audio

# soundfile (libsndfile) container and codec for each format a job may ask for.
_FORMATS: dict[AudioFormat, tuple[str, str]] = {
    AudioFormat.WAV: ("WAV", "PCM_16"),
    AudioFormat.FLAC: ("FLAC", "PCM_16"),
    AudioFormat.OGG: ("OGG", "VORBIS"),
    AudioFormat.MP3: ("MP3", "MPEG_LAYER_III"),
}


@dataclass(frozen=True)
class EncodedAudio:
    data: bytes
    format: AudioFormat
    sample_rate: int
    duration_s: float
    sha256: str


CROSSFADE_S = 0.010


def join(pieces: list[Audio], crossfade_s: float = CROSSFADE_S) -> Audio:
    """One waveform from consecutive pieces, each seam a short linear crossfade: no click
    from a sample jump, and no gap beyond the silences the model itself produced."""
    if len(pieces) == 1:
        return pieces[0]
    rate = pieces[0].sample_rate
    if any(piece.sample_rate != rate for piece in pieces):
        raise ValueError("pieces of one job must share a sample rate")
    out = pieces[0].samples
    for piece in pieces[1:]:
        overlap = min(int(rate * crossfade_s), len(out), len(piece.samples))
        if overlap == 0:
            out = np.concatenate([out, piece.samples])
            continue
        fade = np.linspace(0.0, 1.0, overlap, dtype=np.float32)
        seam = out[-overlap:] * (1.0 - fade) + piece.samples[:overlap] * fade
        out = np.concatenate([out[:-overlap], seam, piece.samples[overlap:]])
    return Audio(samples=out.astype(np.float32), sample_rate=rate)


def resample(audio: Audio, rate: int) -> Audio:
    if rate == audio.sample_rate:
        return audio
    samples = soxr.resample(audio.samples, audio.sample_rate, rate, quality="HQ")
    return Audio(samples=np.asarray(samples, dtype=np.float32), sample_rate=rate)


def encode(audio: Audio, fmt: AudioFormat, rate: int) -> EncodedAudio:
    """Resample to `rate` and encode as `fmt`, all in memory."""
    audio = resample(audio, rate)
    container, subtype = _FORMATS[fmt]
    buffer = io.BytesIO()
    soundfile.write(
        buffer, np.clip(audio.samples, -1.0, 1.0), rate, format=container, subtype=subtype
    )
    data = buffer.getvalue()
    return EncodedAudio(
        data=data,
        format=fmt,
        sample_rate=rate,
        duration_s=round(audio.duration_s, 3),
        sha256=hashlib.sha256(data).hexdigest(),
    )
