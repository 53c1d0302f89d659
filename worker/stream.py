"""Encodes a job's audio stretch by stretch into its stream container and publishes each
stretch to the job's Redis stream (tasks.streams) as soon as it is final.

WAV goes out with an open length (0xFFFFFFFF in the RIFF and data sizes, as streaming
servers do); MP3 frames come from one libsndfile encoder fed stretch by stretch, so there
is no gap at a seam within a job; pcm is the WAV body without its header. Opus goes out as
libopus packets from one encoder per job, which the API puts in Ogg pages as it relays
them (api.ogg). Each unit of a book (tasks.units) has an encoder of its own: at the seams
between them, the encoders' delay and padding are taken out of the units' own silence
(Mp3Frames, OpusPackets). Resampling to the job's rate is one soxr
stream for the same reason. Other formats stream as WAV. A job with
`loudness_lufs` is normalized stretch by stretch here (the stored file uses the whole
job's measure).
"""

from __future__ import annotations

import io
import logging
import struct
from typing import Any, cast

import av
import numpy as np
import numpy.typing as npt
import redis
import soundfile
import soxr

from tasks import streams
from tasks.jobs import AudioFormat, Job
from worker import loudness

log = logging.getLogger(__name__)

OPEN_LENGTH = 0xFFFFFFFF


def wav_header(sample_rate: int, channels: int = 1, bits: int = 16) -> bytes:
    """A 44-byte PCM WAV header whose lengths say 'unknown' (players read to the end)."""
    block = channels * bits // 8
    return (
        b"RIFF"
        + struct.pack("<I", OPEN_LENGTH)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * block, block, bits)
        + b"data"
        + struct.pack("<I", OPEN_LENGTH)
    )


def pcm16(samples: npt.NDArray[np.float32]) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


class StreamEncoder:
    """Float samples at the engine's rate in, container bytes at the job's rate out."""

    def __init__(
        self,
        fmt: AudioFormat,
        sample_rate: int,
        loudness_lufs: float | None = None,
        header: bool = True,
        followed: bool = False,
    ) -> None:
        self.format = streams.stream_format(fmt)
        self.sample_rate = fmt.fixed_rate or sample_rate
        self.loudness_lufs = loudness_lufs
        self._gain = 1.0
        self._resampler: Any = None
        self._mp3: Mp3Frames | None = None
        self._opus: OpusPackets | None = None
        self._header = b""
        if self.format is AudioFormat.OPUS:
            self._opus = OpusPackets(self.sample_rate, follows=not header, followed=followed)
            if header:
                self._header = streams.opus_records([(0, self._opus.head)])
        elif self.format is AudioFormat.MP3:
            self._mp3 = Mp3Frames(self.sample_rate, follows=not header, followed=followed)
        elif self.format is AudioFormat.WAV and header:
            # A later unit of a long job (tasks.units) continues its first unit's stream.
            self._header = wav_header(self.sample_rate)

    def _resample(self, samples: npt.NDArray[np.float32], rate: int, last: bool) -> Any:
        if rate == self.sample_rate:
            return samples
        if self._resampler is None:
            self._resampler = soxr.ResampleStream(rate, self.sample_rate, 1, "float32", "HQ")
        return self._resampler.resample_chunk(samples, last=last)

    def encode(self, samples: npt.NDArray[np.float32], rate: int, last: bool = False) -> bytes:
        samples = np.asarray(self._resample(samples, rate, last), dtype=np.float32)
        if self.loudness_lufs is not None and len(samples):
            samples = self._normalize(samples)
        header, self._header = self._header, b""
        if self._opus is not None:
            return header + streams.opus_records(self._opus.encode(samples, last))
        if self._mp3 is not None:
            return self._mp3.encode(samples, last)
        return header + pcm16(samples)

    def _normalize(self, samples: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """This stretch at the job's loudness; one too short to measure (a seam's last
        milliseconds) gets the gain the stretch before it got."""
        assert self.loudness_lufs is not None
        if len(samples) <= int(loudness.MIN_MEASURABLE_S * self.sample_rate):
            kept: npt.NDArray[np.float32] = np.clip(samples * self._gain, -1.0, 1.0).astype(
                np.float32
            )
            return kept
        out: npt.NDArray[np.float32] = loudness.normalize(
            samples, self.sample_rate, self.loudness_lufs
        )
        level = float(np.sum(np.abs(samples)))
        self._gain = float(np.sum(np.abs(out))) / level if level > 0 else 1.0
        return out


# What counts as silence at a seam: under -50 dBFS.
QUIET = 10 ** (-50 / 20)


def _quiet(samples: npt.NDArray[np.float32], end: bool) -> int:
    """How many samples at the end (or start) of `samples` are quiet."""
    loud = np.flatnonzero(np.abs(samples) >= QUIET)
    if not len(loud):
        return len(samples)
    return len(samples) - 1 - int(loud[-1]) if end else int(loud[0])


class _Tail:
    """Holds back the last `size` samples until more come or the stream ends: the end of a
    unit followed by another is trimmed (OpusPackets, Mp3Frames) once it is known."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._held = np.zeros(0, dtype=np.float32)

    def __call__(self, samples: npt.NDArray[np.float32], last: bool) -> npt.NDArray[np.float32]:
        """What may go to the encoder now: at the end, all that is left."""
        samples = np.concatenate([self._held, samples])
        keep = 0 if last else min(len(samples), self.size)
        self._held = samples[len(samples) - keep :]
        return samples[: len(samples) - keep]


class OpusPackets:
    """libopus (through PyAV, which also cuts the samples into its 20 ms frames) fed
    stretch by stretch: the packets, each with the samples it decodes to, for the reader to
    put in Ogg pages (tasks.streams says why it, not the worker).

    A book's units each have an encoder, and their packets make one Ogg stream, whose
    decoder skips the encoder's look-ahead (the OpusHead's pre-skip) only at its start.
    So an encoder that `follows` another leaves out its unit's first pre-skip samples, if
    quiet: its packets then decode to the unit's audio on time. One that is `followed` by
    another, if its last part-frame and look-ahead are quiet, leaves out the part-frame and
    is not flushed: the padding and the flushed look-ahead that would play as a gap at the
    seam are left out, with the under 27 ms of trailing silence they hold."""

    BIT_RATE = 32000

    def __init__(self, sample_rate: int, follows: bool = False, followed: bool = False) -> None:
        self.sample_rate = sample_rate
        codec = av.CodecContext.create("libopus", "w")
        codec.sample_rate = sample_rate
        codec.layout = "mono"
        codec.format = "flt"
        codec.bit_rate = self.BIT_RATE
        codec.open()
        if codec.extradata is None:
            raise RuntimeError("libopus gave no OpusHead")
        # libopus's OpusHead: its pre-skip (48 kHz samples) is the encoder's look-ahead.
        self.head = bytes(codec.extradata)
        self._codec: Any = codec
        self._look_ahead = struct.unpack_from("<H", self.head, 10)[0] * sample_rate // 48000
        self._skip = self._look_ahead if follows else 0
        self._tail = _Tail(codec.frame_size + self._look_ahead) if followed else None
        self._fed = 0

    def encode(self, samples: npt.NDArray[np.float32], last: bool) -> list[tuple[int, bytes]]:
        samples = np.clip(samples, -1.0, 1.0).astype(np.float32)
        if self._skip and len(samples):
            cut = min(self._skip, _quiet(samples, end=False))
            samples, self._skip = samples[cut:], 0 if cut < len(samples) else self._skip - cut
        flush = last
        if self._tail is not None:
            samples = self._tail(samples, last)
            part = (self._fed + len(samples)) % self._codec.frame_size
            if last and _quiet(samples, end=True) >= part + self._look_ahead:
                samples, flush = samples[: len(samples) - part], False
        packets: list[Any] = []
        if len(samples):
            frame = av.AudioFrame.from_ndarray(samples[np.newaxis, :], format="flt", layout="mono")
            frame.sample_rate = self.sample_rate
            packets += self._codec.encode(frame)
            self._fed += len(samples)
        if flush:
            packets += self._codec.encode(None)
        # Granules count at 48 kHz whatever the rate (RFC 7845); Opus jobs are 48 kHz.
        samples_48k = self._codec.frame_size * 48000 // self.sample_rate
        return [(samples_48k, bytes(packet)) for packet in packets]


class Mp3Frames:
    """LAME (through libsndfile) fed stretch by stretch: its frames as they come, one
    encoder per job (no gap at a seam within it).

    A book's units each have an encoder, and their frames make one stream, whose decoder
    plays each encoder's start as it comes: LAME's placeholder frame for the tag it writes
    on close (a frame of silence there), then its delay (`DELAY` samples before the audio).
    An encoder that `follows` another sends no placeholder. One that is `followed` by
    another leaves out up to `DELAY` samples and a part-frame of its trailing silence, so
    that the next unit's delay takes the place of the first and its last frame needs the
    least padding (LAME pads `frame - 1 - length % frame + 48` samples: 48 when the length
    is one short of whole frames). Only quiet samples are left out: a unit whose speech
    runs to its end keeps it, with the gap."""

    # LAME's encoder delay (576 samples) and the MP3 decoder's (529), at any rate.
    DELAY = 1105

    def __init__(self, sample_rate: int, follows: bool = False, followed: bool = False) -> None:
        self._buffer = io.BytesIO()
        self._file = soundfile.SoundFile(
            self._buffer, "w", samplerate=sample_rate, channels=1,
            format="MP3", subtype="MPEG_LAYER_III", bitrate_mode="CONSTANT",
        )  # fmt: skip
        self._frame = 1152 if sample_rate >= 32000 else 576  # MPEG-1, or MPEG-2 and 2.5
        self._follows = follows
        self._tail = _Tail(self.DELAY + self._frame) if followed else None
        self._fed = 0
        self._sent = 0

    def encode(self, samples: npt.NDArray[np.float32], last: bool) -> bytes:
        samples = np.clip(samples, -1.0, 1.0).astype(np.float32)
        if self._tail is not None:
            samples = self._tail(samples, last)
            if last:
                samples = samples[: len(samples) - self._cut(samples)]
        if len(samples):
            self._file.write(samples)
            self._fed += len(samples)
        if last:
            self._file.close()
        data = self._buffer.getvalue()
        if self._sent == 0 and self._follows:
            # The placeholder is LAME's first frame (its tag, once written on close).
            size = _frame_size(data)
            if not size or len(data) < size:
                return b""
            self._sent = size
        out, first = data[self._sent :], self._sent == 0
        self._sent = len(data)
        return _info_frame(out) if out and first else out

    def _cut(self, tail: npt.NDArray[np.float32]) -> int:
        """How many of the last samples to leave out: `DELAY` and enough to end one short
        of whole frames, or as many frames fewer as the quiet end of `tail` allows."""
        length = self._fed + len(tail)
        want = self.DELAY + (length - self.DELAY - (self._frame - 1)) % self._frame
        quiet = _quiet(tail, end=True)
        if quiet >= want:
            return want
        fewer = want - self._frame * -(-(want - quiet) // self._frame)
        return max(0, fewer)


# Layer III bit rates (kb/s) by index, MPEG-1 and MPEG-2/2.5; sample rates by index.
_KBPS = {
    True: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    False: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_RATES = {0b11: (44100, 48000, 32000), 0b10: (22050, 24000, 16000), 0b00: (11025, 12000, 8000)}


def _frame_size(data: bytes) -> int:
    """The length in bytes of the Layer III frame `data` starts with; 0 if it starts none."""
    if len(data) < 4 or data[0] != 0xFF or (data[1] & 0xE0) != 0xE0:
        return 0
    version, rate_index, kbps_index = (data[1] >> 3) & 0b11, (data[2] >> 2) & 0b11, data[2] >> 4
    if version not in _RATES or rate_index == 0b11 or kbps_index in (0, 0xF):
        return 0
    mpeg1 = version == 0b11
    kbps = _KBPS[mpeg1][kbps_index]
    padding = (data[2] >> 1) & 1
    return (144 if mpeg1 else 72) * kbps * 1000 // _RATES[version][rate_index] + padding


def _info_frame(data: bytes) -> bytes:
    """LAME's first frame is a zero-filled placeholder for the Xing tag it writes on close
    (by seeking back, after those bytes were sent): decoders lose sync on it. Marked as an
    Info tag with no fields, it is skipped and the stream decodes to its end."""
    if len(data) < 4 or data[0] != 0xFF or (data[1] & 0xE0) != 0xE0:
        return data
    mpeg1 = (data[1] >> 3) & 0b11 == 0b11
    mono = (data[3] >> 6) == 0b11
    side = (17 if mono else 32) if mpeg1 else (9 if mono else 17)
    at = 4 + side
    if data[at : at + 8] != bytes(8):
        return data
    return data[:at] + b"Info" + bytes(4) + data[at + 8 :]


class StreamPublisher:
    """XADDs one job's entries: trimmed to `max_entries`, expiring `ttl_s` after the last."""

    def __init__(
        self,
        client: redis.Redis,
        job: Job,
        max_entries: int,
        ttl_s: int,
        header: bool = True,
        followed: bool = False,
    ) -> None:
        self._redis = client
        self._key = streams.stream_key(job.id)
        self._max_entries = max_entries
        self._ttl_s = ttl_s
        # `header`: the stream starts here (a job, a book's first unit); `followed`: a
        # later unit of the book continues it (StreamEncoder).
        self._encoder = StreamEncoder(
            job.format, job.sample_rate, job.loudness_lufs, header, followed
        )
        self._index = 0
        self._rate = 0

    def _add(self, fields: streams.Entry, ttl_s: int) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.xadd(self._key, cast(Any, fields), maxlen=self._max_entries, approximate=True)
        pipe.expire(self._key, ttl_s)
        pipe.execute()

    def samples(self, samples: npt.NDArray[np.float32], rate: int) -> None:
        """A stretch of final samples: encoded and published (a stream that cannot be
        written never fails the job: listeners then fall back to the stored file)."""
        self._rate = rate
        self._publish(self._encoder.encode(samples, rate))

    def close(self) -> None:
        """The encoder's last bytes (resampler and MP3 tail), after the last stretch."""
        rate = self._rate or self._encoder.sample_rate
        self._publish(self._encoder.encode(np.zeros(0, np.float32), rate, last=True))

    def _publish(self, data: bytes) -> None:
        if not data and self._index > 0:
            return
        try:
            self._add(streams.piece_entry(self._index, data), self._ttl_s)
        except redis.RedisError as exc:
            log.warning("stream of %s: cannot publish entry %d: %s", self._key, self._index, exc)
        self._index += 1

    @classmethod
    def end(
        cls, client: redis.Redis, job_id: str, status: str, linger_s: int = streams.STREAM_LINGER_S
    ) -> None:
        """After the job's terminal status is recorded: listeners close, the stream lingers
        `linger_s` (a unit of a book, tasks.units, as long as the book may still run)."""
        key = streams.stream_key(job_id)
        try:
            pipe = client.pipeline(transaction=False)
            pipe.xadd(key, cast(Any, streams.end_entry(status)))
            pipe.expire(key, linger_s)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("stream of %s: cannot publish its end: %s", key, exc)

    @classmethod
    def linger(cls, client: redis.Redis, job_ids: list[str]) -> None:
        """These jobs' streams (a book's units, once the book ended) expire after the
        linger time, as an ended job's does."""
        try:
            pipe = client.pipeline(transaction=False)
            for job_id in job_ids:
                pipe.expire(streams.stream_key(job_id), streams.STREAM_LINGER_S)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("cannot shorten %d streams: %s", len(job_ids), exc)
