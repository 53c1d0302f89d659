"""Leveling a book block by block (`worker.loudness`'s stream forms) gives what the whole
waveform's functions give: the same loudness, peaks, limiter gains and leveled samples,
whatever the blocks' sizes (one sample, none at all, or the whole)."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise

import numpy as np
import pytest

from worker.loudness import (
    Limiter,
    LoudnessMeter,
    TruePeakMeter,
    integrated_lufs,
    limit,
    normalize,
    normalize_stream,
    true_peak_dbtp,
)

RATES = [8000, 16000, 22050, 48000]


def speech_like(rate: int, seconds: float, seed: int = 0) -> np.ndarray:
    """Bursts of a loud, modulated tone over noise: peaks enough to make the limiter work."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    bursts = np.sin(2 * np.pi * 0.9 * t) > 0.3
    tone = 0.9 * np.sin(2 * np.pi * 180 * t) * bursts * (1 + 0.5 * np.sin(2 * np.pi * 7 * t))
    return (tone + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


def blocks(samples: np.ndarray, seed: int = 1) -> list[np.ndarray]:
    """Random cuts, with a one-sample block and an empty one among them."""
    rng = np.random.default_rng(seed)
    cuts = [0, 1, 1, *sorted(rng.integers(2, len(samples), size=12)), len(samples)]
    return [samples[a:b] for a, b in pairwise(cuts)]


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("seconds", [0.3, 0.41, 3.33, 20.0])
def test_the_meter_fed_blocks_reads_what_pyloudnorm_reads_of_the_whole(
    rate: int, seconds: float
) -> None:
    samples = speech_like(rate, seconds)
    meter = LoudnessMeter(rate)
    for block in blocks(samples):
        meter.add(block)
    whole = integrated_lufs(samples.astype(np.float64), rate)
    if np.isfinite(whole):
        assert meter.lufs() == pytest.approx(whole, abs=1e-9)
    else:
        assert meter.lufs() == whole == float("-inf")  # shorter than one gating block


def test_the_meter_reads_silence_as_minus_infinity() -> None:
    meter = LoudnessMeter(22050)
    meter.add(np.zeros(22050 * 2, dtype=np.float32))
    assert meter.lufs() == float("-inf")


@pytest.mark.parametrize("rate", RATES)
def test_the_limiter_fed_blocks_gives_the_whole_limiters_samples(rate: int) -> None:
    samples = speech_like(rate, 4.0).astype(np.float64) * 2.0
    whole = limit(samples, rate, -1.3)
    assert np.abs(whole - samples).max() > 0.1  # it had peaks to take down
    limiter = Limiter(rate, -1.3)
    parts = blocks(samples)
    out = np.concatenate([limiter(b, i == len(parts) - 1) for i, b in enumerate(parts)])
    assert len(out) == len(whole)
    assert np.abs(out - whole).max() < 1e-9


@pytest.mark.parametrize("rate", RATES)
def test_the_true_peak_meter_fed_blocks_reads_the_whole_peak(rate: int) -> None:
    samples = speech_like(rate, 2.0)
    meter = TruePeakMeter(rate)
    parts = blocks(samples)
    for i, block in enumerate(parts):
        meter.add(block, last=i == len(parts) - 1)
    assert meter.dbtp() == pytest.approx(true_peak_dbtp(samples, rate), abs=1e-9)


@pytest.mark.parametrize("rate", [16000, 22050, 48000])
@pytest.mark.parametrize("target", [-23.0, -16.0, -9.0])  # -9: limited hard, four rounds
def test_a_leveled_stream_is_the_whole_leveled(rate: int, target: float) -> None:
    samples = speech_like(rate, 6.0)
    passes = 0

    def read() -> Iterator[np.ndarray]:
        nonlocal passes
        passes += 1
        return iter(blocks(samples, seed=passes))  # cut differently on every pass

    out = np.concatenate(list(normalize_stream(read, rate, target)))
    whole = normalize(samples, rate, target)
    assert out.dtype == np.float32 and len(out) == len(whole)
    assert np.abs(out - whole).max() < 1e-6
    assert 3 <= passes <= 7


def test_audio_too_short_to_measure_is_only_limited_as_a_whole_would_be() -> None:
    samples = speech_like(22050, 0.2) * 3.0
    out = np.concatenate(list(normalize_stream(lambda: iter(blocks(samples)), 22050, -16.0)))
    assert np.abs(out - normalize(samples, 22050, -16.0)).max() < 1e-6
