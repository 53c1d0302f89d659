"""Level a job's whole waveform: integrated loudness to a target (ITU-R BS.1770, measured
with pyloudnorm) under a true-peak ceiling.

Speech brought to -16 LUFS often peaks above 0 dBTP, so a plain gain cannot meet both the
target and the ceiling: a short look-ahead limiter (a sliding minimum of the gain each
4x-oversampled sample needs, then smoothed) takes the few peaks down, and the loudness is
measured again. pyloudnorm measures but does not limit, and the limiters of audio plugin
hosts (pedalboard and the like) bring a large binary for ten lines of numpy, hence this.

A book is leveled the same way without ever being whole in memory: `normalize_stream`
takes `normalize`'s steps as streams (`LoudnessMeter`, `Limiter`, `TruePeakMeter`), with
the same result to float32 rounding. pyloudnorm has no streaming meter, so the meter runs
its filters (read from its Meter) with their state carried from block to block.
"""

from __future__ import annotations

import functools
from array import array
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import numpy.typing as npt
import pyloudnorm
import soxr
from scipy.ndimage import minimum_filter1d, uniform_filter1d
from scipy.signal import lfilter

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


def _group_peaks(up: Samples) -> Samples:
    """The peak of each group of OVERSAMPLE values (one original sample's): the elementwise
    maxima of strided views, the same values as a max along a reshaped axis of 4, which
    numpy reduces several times slower (a third of a leveled book's join)."""
    views = (up[i::OVERSAMPLE] for i in range(OVERSAMPLE))
    return np.asarray(functools.reduce(np.maximum, views), dtype=np.float64)


def limit(samples: Samples, rate: int, ceiling_dbtp: float) -> Samples:
    """`samples` with every true peak brought to `ceiling_dbtp` or below, smoothly."""
    ceiling = _db_to_gain(ceiling_dbtp)
    up = np.abs(oversampled(samples, rate))
    n = len(samples)
    # The gain each original sample needs: the least of its oversampled neighbours'.
    up = np.pad(up, (0, max(0, n * OVERSAMPLE - len(up))))[: n * OVERSAMPLE]
    needed = np.minimum(1.0, ceiling / np.maximum(_group_peaks(up), 1e-12))
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


class LoudnessMeter:
    """`integrated_lufs` fed block by block: pyloudnorm's own K-weighting filters run with
    their state carried across blocks, and each 400 ms gating block's energy comes from a
    running sum of squares read at the sample bounds pyloudnorm computes, so the figure is
    pyloudnorm's for the whole (to rounding) from two floats per 100 ms of audio."""

    _BLOCK_S, _STEP = 0.400, 0.25

    def __init__(self, rate: int) -> None:
        self.rate = rate
        stages = pyloudnorm.Meter(rate)._filters.values()
        self._stages = [(s.b, s.a, s.passband_gain, np.zeros(len(s.a) - 1)) for s in stages]
        self.samples = 0
        self._total = 0.0  # the sum of squares of every filtered sample so far
        # The running sum at each gating block's lower and upper bound, block by block.
        self._sums = (array("d", [0.0]), array("d"))

    def _bound(self, j: int, upper: int) -> int:
        # pyloudnorm's arithmetic as written: int() of its float products.
        return int(self._BLOCK_S * (j * self._STEP + upper) * self.rate)

    def add(self, samples: Samples) -> None:
        x = np.asarray(samples, dtype=np.float64)
        if not len(x):
            return  # scipy's lfilter gives an empty block a garbage final state
        for index, (b, a, gain, state) in enumerate(self._stages):
            y, state = lfilter(b, a, x, zi=state)
            self._stages[index] = (b, a, gain, state)
            x = gain * y
        running = self._total + np.cumsum(np.square(x))
        end = self.samples + len(x)
        for upper, sums in enumerate(self._sums):
            # Bounds ascend, and every bound up to the last block's end is recorded.
            while (k := self._bound(len(sums), upper)) <= end:
                sums.append(float(running[k - self.samples - 1]))
        if len(running):
            self._total = float(running[-1])
        self.samples = end

    def lufs(self) -> float:
        """The integrated loudness of everything added; -inf as `integrated_lufs` gives it."""
        n, rate = self.samples, self.rate
        if n < int(MIN_MEASURABLE_S * rate) + 1:
            return float("-inf")
        count = int(np.round((n / rate - self._BLOCK_S) / (self._BLOCK_S * self._STEP))) + 1
        lows, ups = (np.frombuffer(sums, dtype=np.float64) for sums in self._sums)
        # A last block past the end (pyloudnorm rounds the count) sums what there is.
        highs = np.concatenate([ups, np.full(max(0, count - len(ups)), self._total)])[:count]
        z = (highs - lows[:count]) / (self._BLOCK_S * rate)
        with np.errstate(divide="ignore"):
            blocks = -0.691 + 10.0 * np.log10(z)
        loud = z[blocks >= -70.0]
        if not len(loud):
            return float("-inf")
        relative = -0.691 + 10.0 * np.log10(np.mean(loud)) - 10.0
        kept = z[(blocks > relative) & (blocks > -70.0)]
        mean = float(np.mean(kept)) if len(kept) else 0.0
        return -0.691 + 10.0 * float(np.log10(mean)) if mean > 0 else float("-inf")


class _Oversampler:
    """`oversampled` a block at a time (a soxr stream gives what the whole would)."""

    def __init__(self, rate: int) -> None:
        self._stream = soxr.ResampleStream(rate, rate * OVERSAMPLE, 1, dtype="float64",
                                           quality="VHQ")  # fmt: skip

    def __call__(self, samples: Samples, last: bool = False) -> Samples:
        up = self._stream.resample_chunk(np.asarray(samples, dtype=np.float64), last=last)
        return np.asarray(up, dtype=np.float64)


class TruePeakMeter:
    """`true_peak_dbtp` fed block by block."""

    def __init__(self, rate: int) -> None:
        self._up = _Oversampler(rate)
        self._peak = 0.0

    def add(self, samples: Samples, last: bool = False) -> None:
        self._peak = max(self._peak, float(np.max(np.abs(self._up(samples, last)), initial=0.0)))

    def dbtp(self) -> float:
        return 20.0 * float(np.log10(self._peak)) if self._peak > 0 else float("-inf")


class _Window:
    """A sliding filter over a stream of values (scipy's, with its 'nearest' edges): it
    holds the values its outputs still need, `before` of them behind and `after` ahead, and
    gives each output once every value it sees has come (or the stream has ended)."""

    def __init__(self, apply: Callable[[Samples], Samples], before: int, after: int) -> None:
        self._apply, self._before, self._after = apply, before, after
        self._held = np.zeros(0, dtype=np.float64)
        self._start = 0  # the stream index of `_held[0]`
        self._done = 0  # outputs given so far

    def __call__(self, values: Samples, last: bool) -> Samples:
        self._held = np.concatenate([self._held, values])
        end = self._start + len(self._held)
        ready = end if last else end - self._after
        if ready <= self._done:
            return np.zeros(0, dtype=np.float64)
        # Inside the stream, the filter's own edges fall in the margins and are cut off;
        # at the stream's true ends, 'nearest' is what the whole would have had.
        out = self._apply(self._held)[self._done - self._start : ready - self._start]
        self._done = ready
        keep = max(self._start, ready - self._before)
        self._held, self._start = self._held[keep - self._start :], keep
        return np.asarray(out, dtype=np.float64)


class Limiter:
    """`limit` a block at a time: the 4x-oversampled peaks say the gain each sample needs,
    held over the look-ahead and smoothed by the same filters, and each sample leaves once
    every neighbour its gain depends on has come. Blocks out lag blocks in by about 10 ms."""

    def __init__(self, rate: int, ceiling_dbtp: float) -> None:
        self._ceiling = _db_to_gain(ceiling_dbtp)
        width = max(1, int(_LOOKAHEAD_S * rate))
        self._up = _Oversampler(rate)
        self._up_rest = np.zeros(0, dtype=np.float64)
        self._held = _Window(
            lambda v: minimum_filter1d(v, size=2 * width + 1, mode="nearest"), width, width
        )
        self._smooth = _Window(
            lambda v: uniform_filter1d(v, size=width, mode="nearest"),
            width // 2, width - 1 - width // 2,
        )  # fmt: skip
        self._samples = np.zeros(0, dtype=np.float64)
        self._count = 0  # samples in
        self._peaks = 0  # samples whose peak is known

    def __call__(self, samples: Samples, last: bool = False) -> Samples:
        self._samples = np.concatenate([self._samples, np.asarray(samples, dtype=np.float64)])
        self._count += len(samples)
        up = np.concatenate([self._up_rest, np.abs(self._up(samples, last))])
        due = (self._count - self._peaks) * OVERSAMPLE
        if last:  # as `limit`: a group of 4 for every sample, zeros past the stream's end
            up = np.pad(up, (0, max(0, due - len(up))))
        whole = min(len(up), due) // OVERSAMPLE
        peaks = _group_peaks(up[: whole * OVERSAMPLE])
        self._up_rest = up[whole * OVERSAMPLE :]
        self._peaks += whole
        needed = np.minimum(1.0, self._ceiling / np.maximum(peaks, 1e-12))
        gain = self._smooth(self._held(needed, last), last)
        out, self._samples = self._samples[: len(gain)], self._samples[len(gain) :]
        return out * gain


def normalize_stream(
    read: Callable[[], Iterable[Samples]],
    rate: int,
    target_lufs: float,
    ceiling_dbtp: float = TRUE_PEAK_CEILING_DBTP,
) -> Iterator[Samples]:
    """`normalize` for audio that is never whole in memory: `read()` gives it anew, block
    by block, for each pass (a book spooled to disk). Each gain step of `normalize` becomes
    one more gain-and-limiter stage in a chain, measured on a pass of its own; a last pass
    measures the true peak, and the final pass yields the leveled blocks. Passes: one more
    than `normalize`'s measurements (at most seven), memory: a block and a few filters."""
    aim = ceiling_dbtp - _HEADROOM_DB
    gains: list[float] = []

    def chain(final: bool) -> Iterator[Samples]:
        stages = [Limiter(rate, aim) for _ in range(len(gains) + (1 if final else 0))]
        blocks = iter(read())
        block = next(blocks, None)
        while block is not None:
            following = next(blocks, None)
            x: Samples = np.asarray(block, dtype=np.float64)
            for index, stage in enumerate(stages):
                x = stage(x * gains[index] if index < len(gains) else x, following is None)
            yield x
            block = following

    meter = LoudnessMeter(rate)
    for x in chain(final=False):
        meter.add(x)
    loudness = meter.lufs()
    if np.isfinite(loudness):
        for _ in range(4):
            gains.append(_db_to_gain(target_lufs - loudness))
            meter = LoudnessMeter(rate)
            for x in chain(final=False):
                meter.add(x)
            loudness = meter.lufs()
            if abs(loudness - target_lufs) < 0.05:
                break
    peak = TruePeakMeter(rate)
    for x in chain(final=True):
        peak.add(x)
    peak.add(np.zeros(0), last=True)
    excess = peak.dbtp() - aim
    scale = _db_to_gain(-excess) if excess > 0 else 1.0
    for x in chain(final=True):
        yield np.asarray(x * scale if scale != 1.0 else x, dtype=np.float32)
