"""Encoding: every format decodes, by an independent decoder (ffmpeg), at the expected
rate and channel count to the expected duration; loudness meets its target and ceiling."""

from __future__ import annotations

import gc
import io
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tasks.jobs import AudioFormat
from tests.helpers.audio_probe import loudness, probe
from worker.audio import AAC_PRIMING_SAMPLES, AudioWriter, encode
from worker.engines import Audio
from worker.loudness import integrated_lufs, true_peak_dbtp

# ffprobe's codec and container for each format.
CODECS = {
    AudioFormat.WAV: ("pcm_s16le", "wav"),
    AudioFormat.FLAC: ("flac", "flac"),
    AudioFormat.OGG: ("vorbis", "ogg"),
    AudioFormat.MP3: ("mp3", "mp3"),
    AudioFormat.OPUS: ("opus", "ogg"),
    AudioFormat.AAC: ("aac", "aac"),
    AudioFormat.PCM: ("pcm_s16le", "s16le"),
    AudioFormat.MULAW: ("pcm_mulaw", "wav"),
    AudioFormat.ALAW: ("pcm_alaw", "wav"),
}


def tone(seconds: float = 1.3, rate: int = 22050, amplitude: float = 0.5) -> Audio:
    t = np.arange(int(seconds * rate)) / rate
    samples = amplitude * np.sin(2 * np.pi * 440 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return Audio(samples=samples.astype(np.float32), sample_rate=rate)


def test_every_format_has_a_codec_here() -> None:
    assert set(CODECS) == set(AudioFormat)


@pytest.mark.parametrize("fmt", list(AudioFormat))
@pytest.mark.parametrize("rate", [8000, 22050, 24000, 48000])
def test_each_format_decodes_to_its_rate_channels_and_duration(fmt: AudioFormat, rate: int) -> None:
    encoded = encode(tone(), fmt, rate)
    expected_rate = fmt.fixed_rate or rate
    assert encoded.sample_rate == expected_rate
    assert encoded.duration_s == pytest.approx(1.3, abs=0.001)
    found = probe(encoded.data, raw_rate=expected_rate if fmt is AudioFormat.PCM else None)
    assert (found.codec, found.container) == CODECS[fmt]
    assert found.sample_rate == expected_rate
    assert found.channels == 1
    expected_s = encoded.duration_s
    if fmt is AudioFormat.AAC:
        # ADTS cannot say that the first frame primes the decoder: it plays as silence.
        expected_s += AAC_PRIMING_SAMPLES / expected_rate
        if expected_rate < 22050:
            pytest.skip("AAC frames (1024 samples) are longer than 50 ms below 22050 Hz")
    assert found.duration_s == pytest.approx(expected_s, abs=0.05)
    assert len(encoded.sha256) == 64


@pytest.mark.parametrize("fmt", [AudioFormat.MULAW, AudioFormat.ALAW])
def test_telephony_formats_are_8_khz_8_bit_companded(fmt: AudioFormat) -> None:
    encoded = encode(tone(), fmt, 24000)
    found = probe(encoded.data)
    assert (found.sample_rate, found.bits_per_sample) == (8000, 8)
    # A G.711 WAV is one byte per sample after its header.
    assert len(encoded.data) == pytest.approx(1.3 * 8000, abs=200)


def test_pcm_is_headerless_little_endian_16_bit() -> None:
    audio = tone(seconds=0.5, rate=24000)
    data = encode(audio, AudioFormat.PCM, 24000).data
    assert len(data) == 2 * len(audio.samples)
    decoded = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32767
    assert np.max(np.abs(decoded - audio.samples)) < 1e-3


def test_clipping_input_is_clamped() -> None:
    loud = Audio(samples=np.full(8000, 3.0, dtype=np.float32), sample_rate=8000)
    data = encode(loud, AudioFormat.PCM, 8000).data
    assert np.max(np.abs(np.frombuffer(data, dtype="<i2"))) <= 32767


@pytest.mark.parametrize("amplitude", [0.02, 0.3, 0.99])
@pytest.mark.parametrize("target", [-30.0, -16.0, -8.0])
def test_loudness_meets_target_and_true_peak_ceiling(amplitude: float, target: float) -> None:
    """Quiet, moderate and near-full-scale input all come out at the target, never above
    -1 dBTP, by this module's meter and by ffmpeg's."""
    encoded = encode(tone(seconds=3.0, amplitude=amplitude), AudioFormat.WAV, 22050, target)
    measured = loudness(encoded.data)
    assert measured.integrated_lufs == pytest.approx(target, abs=0.5)
    assert measured.true_peak_dbtp <= -1.0


def test_loudness_too_short_to_measure_keeps_level_under_the_ceiling() -> None:
    short = tone(seconds=0.2, amplitude=0.99)
    encoded = encode(short, AudioFormat.WAV, 22050, -16.0)
    assert np.isinf(integrated_lufs(short.samples, 22050))
    samples = np.frombuffer(encoded.data[44:], dtype="<i2").astype(np.float32) / 32768
    assert true_peak_dbtp(samples, 22050) <= -1.0
    assert true_peak_dbtp(samples, 22050) > -3.0  # brought to the ceiling, not silenced


# libsndfile's Vorbis encoder analyses each write on its own: fed blocks, it makes another
# file than fed the whole (the same blocks make the same file: see below).
_SAME_BYTES = set(AudioFormat) - {AudioFormat.OGG}


@pytest.mark.parametrize("fmt", list(AudioFormat))
def test_the_same_audio_encodes_to_the_same_bytes(fmt: AudioFormat, tmp_path: Path) -> None:
    """Every format, Ogg's too (its serial number is made of its content): two runs of a
    job that store the same samples store the same file, so either one's sha256 is right."""
    audio = tone(seconds=2.0)
    assert encode(audio, fmt, 16000).data == encode(audio, fmt, 16000).data
    files = []
    for name in ("one", "two"):
        with (tmp_path / name).open("w+b") as sink:
            writer = AudioWriter(sink, fmt, audio.sample_rate, 16000)
            for start in range(0, len(audio.samples), 5000):
                writer.write(audio.samples[start : start + 5000])
            writer.close()
            sink.seek(0)
            files.append(sink.read())
    assert files[0] == files[1]


@pytest.mark.parametrize("fmt", list(AudioFormat))
@pytest.mark.parametrize("rate", [16000, 22050])
def test_a_writer_fed_blocks_makes_the_file_that_encode_makes_whole(
    fmt: AudioFormat, rate: int, tmp_path: Path
) -> None:
    """What a book's streamed join writes (AudioWriter) is what `encode` makes of the whole."""
    audio = tone(seconds=3.0)
    whole = encode(audio, fmt, rate)
    with (tmp_path / "out").open("w+b") as sink:
        writer = AudioWriter(sink, fmt, audio.sample_rate, rate)
        for start in range(0, len(audio.samples), 7001):  # blocks of no frame's size
            writer.write(audio.samples[start : start + 7001])
        assert writer.close() == whole.duration_s
        assert writer.sample_rate == whole.sample_rate
        sink.seek(0)
        data = sink.read()
    if fmt in _SAME_BYTES:
        assert data == whole.data
    else:
        streamed, _ = soundfile.read(io.BytesIO(data), dtype="float32")
        decoded, _ = soundfile.read(io.BytesIO(whole.data), dtype="float32")
        assert len(streamed) == len(decoded)
        tolerance = 0.0 if fmt is AudioFormat.OPUS else 0.02  # Vorbis: its own blocks
        assert np.abs(streamed - decoded).max() <= tolerance


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("fmt", [AudioFormat.WAV, AudioFormat.MP3, AudioFormat.OPUS])
def test_an_abandoned_writer_is_closed_while_its_file_is_open(
    fmt: AudioFormat, tmp_path: Path
) -> None:
    """A join that fails partway abandons its writer before the spool file closes: left to
    the garbage collector, libsndfile would write into a closed file."""
    with (tmp_path / "out").open("w+b") as sink:
        writer = AudioWriter(sink, fmt, 22050, 22050)
        writer.write(tone().samples)
        writer.abandon()
    del writer
    gc.collect()
