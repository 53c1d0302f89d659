"""Level a job's whole waveform: integrated loudness to a target (ITU-R BS.1770, measured
with pyloudnorm) under a true-peak ceiling.

Speech brought to -16 LUFS often peaks above 0 dBTP, so a plain gain cannot meet both the
target and the ceiling: a short look-ahead limiter (a sliding minimum of the gain each
4x-oversampled sample needs, then smoothed) takes the few peaks down, and the loudness is
measured again. pyloudnorm measures but does not limit, and the limiters of audio plugin
hosts (pedalboard and the like) bring a large binary for ten lines of numpy, hence this.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyloudnorm
import soxr
from scipy.ndimage import minimum_filter1d, uniform_filter1d

Samples = npt.NDArray[np.floating]

TRUE_PEAK_CEILING_DBTP = -1.0
# The limiter aims this far below the ceiling: meters differ in how they oversample.
_HEADROOM_DB = 0.3
OVERSAMPLE = 4
# How far ahead the limiter sees a peak coming, and how long it holds the gain down.
_LOOKAHEAD_S = 0.005
# Speech shorter than one BS.1770 gating block (400 ms) has no integrated loudness.
MIN_MEASURABLE_S = 0.4


def _db_to_gain(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def oversampled(samples: Samples, rate: int) -> Samples:
    """The waveform at 4x its rate: where inter-sample peaks show."""
    up = soxr.resample(samples.astype(np.float64), rate, rate * OVERSAMPLE, quality="VHQ")
    return np.asarray(up, dtype=np.float64)


def true_peak_dbtp(samples: Samples, rate: int) -> float:
    """The true peak (dBTP), estimated on the 4x-oversampled waveform as BS.1770 Annex 2."""
    peak = float(np.max(np.abs(oversampled(samples, rate)), initial=0.0))
    return 20.0 * float(np.log10(peak)) if peak > 0 else float("-inf")


def integrated_lufs(samples: Samples, rate: int) -> float:
    """BS.1770 integrated loudness; -inf for silence or audio shorter than one block."""
    if len(samples) < int(MIN_MEASURABLE_S * rate) + 1:
        return float("-inf")
    return float(pyloudnorm.Meter(rate).integrated_loudness(samples.astype(np.float64)))


def limit(samples: Samples, rate: int, ceiling_dbtp: float) -> Samples:
    """`samples` with every true peak brought to `ceiling_dbtp` or below, smoothly."""
    ceiling = _db_to_gain(ceiling_dbtp)
    up = np.abs(oversampled(samples, rate))
    n = len(samples)
    # The gain each original sample needs: the least of its oversampled neighbours'.
    up = np.pad(up, (0, max(0, n * OVERSAMPLE - len(up))))[: n * OVERSAMPLE]
    peaks = up.reshape(n, OVERSAMPLE).max(axis=1)
    needed = np.minimum(1.0, ceiling / np.maximum(peaks, 1e-12))
    if needed.min() >= 1.0:
        return samples
    width = max(1, int(_LOOKAHEAD_S * rate))
    # Hold the lowest gain `width` samples either side, then average over `width`: every
    # sample near a peak gets at most the gain that peak needs, and the gain has no steps.
    held = minimum_filter1d(needed, size=2 * width + 1, mode="nearest")
    gain = uniform_filter1d(held, size=width, mode="nearest")
    return np.asarray(samples * gain, dtype=samples.dtype)


def normalize(
    samples: Samples,
    rate: int,
    target_lufs: float,
    ceiling_dbtp: float = TRUE_PEAK_CEILING_DBTP,
) -> Samples:
    """`samples` at `target_lufs` integrated with true peaks at most `ceiling_dbtp`.

    Audio too short (or too quiet) to measure keeps its level and only meets the ceiling."""
    x: Samples = samples.astype(np.float64)
    aim = ceiling_dbtp - _HEADROOM_DB
    loudness = integrated_lufs(x, rate)
    if np.isfinite(loudness):
        for _ in range(4):
            x = x * _db_to_gain(target_lufs - loudness)
            x = limit(x, rate, aim)
            loudness = integrated_lufs(x, rate)
            if abs(loudness - target_lufs) < 0.05:
                break
    x = limit(x, rate, aim)
    # Whatever a meter with another oversampler might still see is taken off as plain gain.
    excess = true_peak_dbtp(x, rate) - aim
    if excess > 0:
        x = x * _db_to_gain(-excess)
    return np.asarray(x, dtype=np.float32)
