"""Stream containers: bytes sent stretch by stretch decode as one file; a book's units,
each with an encoder of its own, decode as one stream without gaps of the encoders' own."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from api.ogg import OggOpusWriter
from tasks.jobs import AudioFormat
from tests.helpers import audio_probe
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


def spans(samples: np.ndarray, rate: int) -> list[tuple[float, float]]:
    """(start, end) seconds of each sound in `samples`, told apart by 20 ms of quiet."""
    ms = rate // 1000
    loud = np.abs(samples[: len(samples) // ms * ms].reshape(-1, ms)).max(axis=1)
    on = np.flatnonzero(loud > 0.1 * loud.max())
    cuts = np.flatnonzero(np.diff(on) > 20)
    starts, ends = np.r_[on[0], on[cuts + 1]], np.r_[on[cuts], on[-1]] + 1
    return [(float(a) / 1000, float(b) / 1000) for a, b in zip(starts, ends, strict=True)]


def book_stream(fmt: AudioFormat, rate: int, units: list[np.ndarray]) -> np.ndarray:
    """The units encoded as a book's are, each by an encoder of its own fed three
    stretches, relayed as the API does, and decoded by ffmpeg."""
    writer, data = OggOpusWriter(), b""
    for index, samples in enumerate(units):
        encoder = StreamEncoder(fmt, rate, header=index == 0, followed=index < len(units) - 1)
        pieces = [encoder.encode(s, rate) for s in np.array_split(samples.astype(np.float32), 3)]
        pieces.append(encoder.encode(np.zeros(0, np.float32), rate, last=True))
        data += b"".join(writer.feed(p) if fmt is AudioFormat.OPUS else p for p in pieces)
    return audio_probe.decode(data).astype(np.float32) / 32768


SPEECH_S, LEAD_S = 0.4, 0.04


def unit(rate: int, tail_s: float) -> np.ndarray:
    t = np.arange(int(SPEECH_S * rate)) / rate
    speech = 0.5 * np.sin(2 * np.pi * 300 * t)
    return np.concatenate([np.zeros(int(LEAD_S * rate)), speech, np.zeros(int(tail_s * rate))])


# What a seam may leave out of the units' own silence: Opus, a frame and its look-ahead;
# MP3, a frame (the decoders' delays are taken out whole).
SEAMS = [
    (AudioFormat.OPUS, 48000, 0.027),
    (AudioFormat.MP3, 16000, 0.036),
    (AudioFormat.MP3, 22050, 0.027),
    (AudioFormat.MP3, 44100, 0.027),
]


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="decodes with ffmpeg")
@pytest.mark.parametrize(("fmt", "rate", "frame_s"), SEAMS)
def test_a_books_stream_has_no_gap_of_its_own_at_unit_seams(
    fmt: AudioFormat, rate: int, frame_s: float
) -> None:
    """Between two units' speech the stream holds their own silence, less at most a frame
    of it, never more (3 ms of padding at most): no encoder delay, placeholder frame or
    padding is played; and all of each unit's speech is there."""
    tails = [0.15 + 0.0073 * k for k in range(4)]  # no unit a whole number of frames
    found = spans(book_stream(fmt, rate, [unit(rate, tail) for tail in tails]), rate)
    assert len(found) == len(tails)
    for index, (start, end) in enumerate(found):
        assert end - start == pytest.approx(SPEECH_S, abs=0.003)
        if index:
            own = tails[index - 1] + LEAD_S
            gap = start - found[index - 1][1]
            assert own - frame_s <= gap <= own + 0.003, (index, gap, own)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="decodes with ffmpeg")
@pytest.mark.parametrize("fmt", [AudioFormat.MP3, AudioFormat.OPUS])
def test_speech_at_a_units_very_end_or_start_is_kept_at_the_seam(fmt: AudioFormat) -> None:
    """Only quiet samples are left out at a seam: a unit that speaks to its last sample,
    and one that speaks from its first, keep all of it (and the gap, a few frames)."""
    rate = 48000
    to_the_end, from_the_start = unit(rate, 0.0), unit(rate, 0.1)[int(LEAD_S * rate) :]
    found = spans(book_stream(fmt, rate, [to_the_end, from_the_start, unit(rate, 0.1)]), rate)
    assert len(found) == 3
    for start, end in found:
        assert end - start == pytest.approx(SPEECH_S, abs=0.003)


@pytest.mark.parametrize("rate", [22050, 44100])
def test_a_following_mp3_unit_whose_bytes_come_at_its_end_sends_no_tag(rate: int) -> None:
    """LAME writes its tag into the placeholder frame on close: a unit that follows and is
    too short for any byte before its end still leaves that whole frame out."""
    encoder = StreamEncoder(AudioFormat.MP3, rate, header=False)
    data = encoder.encode(tone(0.01, rate), rate)
    data += encoder.encode(np.zeros(0, np.float32), rate, last=True)
    assert data[:2] in (b"\xff\xf3", b"\xff\xfb")  # a frame's header, MPEG-2 or MPEG-1
    assert b"Xing" not in data and b"Info" not in data
