"""A job's pieces in speaking order: synthesized in growing groups so the first is heard
early, joined seam by seam as they come (the same crossfade as `worker.audio.join`), and
timed (tasks.timestamps) from where each piece landed in the joined audio."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from tasks.errors import EngineError, FleetError, PermanentError
from tasks.timestamps import Granularity, TimedText, Timestamps
from worker.audio import CROSSFADE_S
from worker.engines import Audio, SynthesisRequest

Samples = npt.NDArray[np.float32]


class Synthesizer(Protocol):
    """Turns requests into audio, or the error each one alone raised (worker.batcher)."""

    def synthesize(self, requests: Sequence[SynthesisRequest]) -> list[Audio | FleetError]: ...


def groups(count: int, largest: int) -> Iterator[range]:
    """Consecutive index ranges of 1, 2, 4, ... up to `largest` items: the first piece
    comes back after one item's synthesis, later ones in batches that keep a GPU busy."""
    start, size = 0, 1
    while start < count:
        yield range(start, min(count, start + size))
        start += size
        size = min(size * 2, max(1, largest))


@dataclass
class SeamJoiner:
    """`worker.audio.join`, one piece at a time: `add` returns the samples that no later
    seam can change; `finish` the rest. Their concatenation equals `join(pieces)`."""

    crossfade_s: float = CROSSFADE_S
    _tail: Samples | None = None
    _emitted: int = 0
    # Where each piece starts in the joined audio, in samples.
    starts: list[int] = field(default_factory=list)

    def add(self, piece: Audio) -> Samples:
        hold = int(piece.sample_rate * self.crossfade_s)
        samples = piece.samples
        if self._tail is None:
            self.starts.append(0)
            out = samples
        else:
            overlap = min(hold, len(self._tail), len(samples))
            self.starts.append(self._emitted + len(self._tail) - overlap)
            if overlap == 0:
                out = np.concatenate([self._tail, samples])
            else:
                fade = np.linspace(0.0, 1.0, overlap, dtype=np.float32)
                seam = self._tail[-overlap:] * (1.0 - fade) + samples[:overlap] * fade
                out = np.concatenate([self._tail[:-overlap], seam, samples[overlap:]])
        keep = min(hold, len(out))
        ready, self._tail = out[: len(out) - keep], out[len(out) - keep :]
        self._emitted += len(ready)
        return ready.astype(np.float32)

    def finish(self) -> Samples:
        tail = self._tail if self._tail is not None else np.zeros(0, dtype=np.float32)
        self._emitted += len(tail)
        self._tail = np.zeros(0, dtype=np.float32)
        return tail.astype(np.float32)

    @property
    def length(self) -> int:
        return self._emitted + (0 if self._tail is None else len(self._tail))


@dataclass(frozen=True)
class Spoken:
    """The pieces the engine spoke (rejected ones left out), their texts, joined audio."""

    audio: Audio
    texts: list[str]
    pieces: list[Audio]
    starts: list[int]


def synthesize_in_order(
    synthesizer: Synthesizer,
    requests: Sequence[SynthesisRequest],
    largest_group: int,
    on_samples: Callable[[Samples, int], None] | None = None,
    on_piece: Callable[[int, int, float], None] | None = None,
) -> Spoken:
    """Synthesize `requests` group by group (`groups`), hand each stretch of joined samples
    to `on_samples(samples, sample_rate)` as soon as it is final, tell `on_piece(done,
    total, audio_s)` after each group, and return the whole.

    A transient error of any piece raises it (the job is retried); pieces the engine
    rejects as text are left out, unless all are (then that error is raised)."""
    joiner = SeamJoiner()
    chunks: list[Samples] = []
    spoken: list[Audio] = []
    texts: list[str] = []
    rejected: FleetError | None = None
    for indexes in groups(len(requests), largest_group):
        batch = [requests[i] for i in indexes]
        results = synthesizer.synthesize(batch)
        if len(results) != len(batch):
            raise EngineError(f"got {len(results)} results for {len(batch)} pieces")
        for request, result in zip(batch, results, strict=True):
            if not isinstance(result, Audio):
                if not isinstance(result, PermanentError):
                    raise result
                rejected = rejected or result
                continue
            if spoken and result.sample_rate != spoken[0].sample_rate:
                raise EngineError("pieces of one job must share a sample rate")
            ready = joiner.add(result)
            chunks.append(ready)
            spoken.append(result)
            texts.append(request.text)
            if on_samples is not None and len(ready):
                on_samples(ready, result.sample_rate)
        if on_piece is not None and spoken:
            on_piece(indexes.stop, len(requests), joiner.length / spoken[0].sample_rate)
    if not spoken:
        raise rejected or EngineError("no pieces to synthesize")
    rest = joiner.finish()
    chunks.append(rest)
    rate = spoken[0].sample_rate
    if on_samples is not None and len(rest):
        on_samples(rest, rate)
    audio = Audio(samples=np.concatenate(chunks), sample_rate=rate)
    return Spoken(audio=audio, texts=texts, pieces=spoken, starts=joiner.starts)


def timestamps(spoken: Spoken, total_samples: int, duration_s: float | None = None) -> Timestamps:
    """Word items when every piece came with word timings, else one item per sentence the
    engine reported, else per piece; shifted to where each piece starts, never
    overlapping the one before (a seam's crossfade is shared by both sides), and within
    `duration_s`, the stored file's (resampled, rounded) duration, where given."""
    rate = spoken.pieces[0].sample_rate
    duration = total_samples / rate
    if duration_s is not None:
        duration = min(duration, duration_s)
    words = all(piece.words is not None for piece in spoken.pieces)
    items: list[TimedText] = []
    ends = [*spoken.starts[1:], total_samples]
    for piece, text, start, end in zip(
        spoken.pieces, spoken.texts, spoken.starts, ends, strict=True
    ):
        offset = start / rate
        if words and piece.words is not None:
            spans = [(w.text, offset + w.start_s, offset + w.end_s) for w in piece.words]
        else:
            spans = [(text, offset, end / rate)]
        for word, begin, finish in spans:
            floor = items[-1].end_s if items else 0.0
            begin = min(max(begin, floor), duration)
            finish = min(max(finish, begin), duration)
            items.append(TimedText(text=word, start_s=round(begin, 3), end_s=round(finish, 3)))
    return Timestamps(granularity=Granularity.WORD if words else Granularity.SENTENCE, items=items)
