"""From engine samples to the bytes a client downloads: resample, level, encode, fingerprint.

libsndfile (soundfile) writes every format it can: WAV, FLAC, Ogg Vorbis, MP3, Ogg Opus,
raw PCM and the G.711 WAV subtypes. It has no AAC encoder, so AAC goes through PyAV (the
`av` wheel bundles ffmpeg's own encoder) into ADTS frames. Its Ogg files get a serial number
of their own content (tasks.ogg), so the same samples always make the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass
from typing import BinaryIO

import av
import numpy as np
import numpy.typing as npt
import soundfile
import soxr

from tasks.jobs import AudioFormat
from tasks.ogg import stamp_serial
from worker.engines import Audio
from worker.loudness import normalize

log = logging.getLogger(__name__)

# soundfile (libsndfile) container and codec for each format it writes.
_FORMATS: dict[AudioFormat, tuple[str, str]] = {
    AudioFormat.WAV: ("WAV", "PCM_16"),
    AudioFormat.FLAC: ("FLAC", "PCM_16"),
    AudioFormat.OGG: ("OGG", "VORBIS"),
    AudioFormat.MP3: ("MP3", "MPEG_LAYER_III"),
    AudioFormat.OPUS: ("OGG", "OPUS"),
    AudioFormat.PCM: ("RAW", "PCM_16"),
    AudioFormat.MULAW: ("WAV", "ULAW"),
    AudioFormat.ALAW: ("WAV", "ALAW"),
}
# Those in Ogg, whose serial number tasks.ogg makes of their content.
_OGG = {fmt for fmt, (kind, _) in _FORMATS.items() if kind == "OGG"}
AAC_BIT_RATE = 64000
# ffmpeg's AAC encoder primes each stream with one frame that ADTS has no field to signal:
# decoders play these samples as silence before the speech.
AAC_PRIMING_SAMPLES = 1024


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


def _encode_aac(samples: npt.NDArray[np.float32], rate: int) -> bytes:
    buffer = io.BytesIO()
    pcm = (samples * 32767.0).round().astype(np.int16)
    with av.open(buffer, mode="w", format="adts") as container:
        stream = container.add_stream("aac", rate=rate, layout="mono")
        stream.bit_rate = AAC_BIT_RATE
        frame = av.AudioFrame.from_ndarray(pcm[np.newaxis, :], format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def _encode_soundfile(samples: npt.NDArray[np.float32], fmt: AudioFormat, rate: int) -> bytes:
    container, subtype = _FORMATS[fmt]
    buffer = io.BytesIO()
    # Raw PCM has no header to say its byte order: little-endian, as the API documents.
    endian = "LITTLE" if container == "RAW" else "FILE"
    soundfile.write(buffer, samples, rate, format=container, subtype=subtype, endian=endian)
    if fmt in _OGG:
        stamp_serial(buffer)
    return buffer.getvalue()


def encode(
    audio: Audio, fmt: AudioFormat, rate: int, loudness_lufs: float | None = None
) -> EncodedAudio:
    """Resample to `rate` (the format's own rate where it has one), level the whole
    waveform to `loudness_lufs` if set (worker.loudness), and encode as `fmt`, in memory."""
    rate = fmt.fixed_rate or rate
    audio = resample(audio, rate)
    samples = audio.samples
    if loudness_lufs is not None:
        samples = normalize(samples, rate, loudness_lufs)
    samples = np.clip(samples, -1.0, 1.0).astype(np.float32, copy=False)
    if fmt is AudioFormat.AAC:
        data = _encode_aac(samples, rate)
    else:
        data = _encode_soundfile(samples, fmt, rate)
    return EncodedAudio(
        data=data,
        format=fmt,
        sample_rate=rate,
        duration_s=round(audio.duration_s, 3),
        sha256=hashlib.sha256(data).hexdigest(),
    )


class StreamResampler:
    """`resample` a block at a time (a soxr stream: the same samples as the whole, which
    the tests hold it to); `last=True` flushes what the filter still holds."""

    def __init__(self, source_rate: int, rate: int) -> None:
        self._stream = (
            soxr.ResampleStream(source_rate, rate, 1, dtype="float32", quality="HQ")
            if source_rate != rate
            else None
        )

    def __call__(
        self, samples: npt.NDArray[np.float32], last: bool = False
    ) -> npt.NDArray[np.float32]:
        if self._stream is None:
            return samples
        out = self._stream.resample_chunk(np.asarray(samples, dtype=np.float32), last=last)
        return np.asarray(out, dtype=np.float32)


class AudioWriter:
    """`encode` without loudness, one block at a time into `sink`: resampled by a soxr
    stream, clipped and handed to the same encoders, so audio longer than memory allows
    (a book) is never whole anywhere but in the file. libsndfile and PyAV take the blocks
    as they come; the WAV header's length is written when the writer closes."""

    def __init__(self, sink: BinaryIO, fmt: AudioFormat, source_rate: int, rate: int) -> None:
        self.format = fmt
        self.sample_rate = fmt.fixed_rate or rate
        self.frames = 0
        self._resample = StreamResampler(source_rate, self.sample_rate)
        self._sink = sink
        self._file: soundfile.SoundFile | None = None
        self._aac: tuple[av.container.OutputContainer, av.AudioStream] | None = None
        if fmt is AudioFormat.AAC:
            container = av.open(sink, mode="w", format="adts")
            stream = container.add_stream("aac", rate=self.sample_rate, layout="mono")
            stream.bit_rate = AAC_BIT_RATE
            self._aac = (container, stream)
        else:
            kind, subtype = _FORMATS[fmt]
            endian = "LITTLE" if kind == "RAW" else "FILE"
            self._file = soundfile.SoundFile(
                sink, "w", self.sample_rate, 1, subtype=subtype, endian=endian, format=kind
            )

    def write(self, samples: npt.NDArray[np.float32]) -> None:
        self._put(self._resample(samples))

    def close(self) -> float:
        """Flush and finish the file; its duration in seconds."""
        self._finish()
        if self.format in _OGG:
            stamp_serial(self._sink)
        return round(self.frames / self.sample_rate, 3)

    def abandon(self) -> None:
        """Close the encoder of a file that will not be used (a join that failed), while
        its sink is still open: left to the garbage collector, it would write to a closed
        file."""
        try:
            self._finish()
        except Exception as exc:  # the file is thrown away; the join's own error counts
            log.debug("an abandoned audio file did not close: %s", exc)

    def _finish(self) -> None:
        self._put(self._resample(np.zeros(0, dtype=np.float32), last=True))
        if self._file is not None:
            self._file.close()
        if self._aac is not None:
            container, stream = self._aac
            for packet in stream.encode(None):
                container.mux(packet)
            container.close()

    def _put(self, samples: npt.NDArray[np.float32]) -> None:
        if not len(samples):
            return
        samples = np.clip(samples, -1.0, 1.0).astype(np.float32, copy=False)
        self.frames += len(samples)
        if self._file is not None:
            self._file.write(samples)
        elif self._aac is not None:
            container, stream = self._aac
            pcm = (samples * 32767.0).round().astype(np.int16)
            frame = av.AudioFrame.from_ndarray(pcm[np.newaxis, :], format="s16", layout="mono")
            frame.sample_rate = self.sample_rate
            frame.pts = None
            for packet in stream.encode(frame):
                container.mux(packet)
