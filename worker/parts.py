"""A unit's part (tasks.units) as the worker keeps it: the raw samples of its spoken pieces
end to end (little-endian float32, so the joined book is sample for sample what one run of
all its pieces would make), and the book joined from its parts in order."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from tasks.errors import EngineError, InvalidText, StorageError
from tasks.units import Part
from worker.engines import Audio, Word
from worker.pieces import SeamJoiner, Spoken


def describe(spoken: Spoken, key: str) -> Part:
    """The part of a unit's spoken pieces whose samples are stored under `key`."""
    return Part(
        key=key,
        sample_rate=spoken.pieces[0].sample_rate,
        texts=spoken.texts,
        lengths=[len(piece.samples) for piece in spoken.pieces],
        words=[
            None if piece.words is None else [(w.text, w.start_s, w.end_s) for w in piece.words]
            for piece in spoken.pieces
        ],
    )


def encode(spoken: Spoken) -> bytes:
    return b"".join(piece.samples.astype("<f4").tobytes() for piece in spoken.pieces)


def join(parts: Sequence[Part], read: Callable[[Part], bytes | None]) -> Spoken:
    """The book: every part's pieces, in order, through one `SeamJoiner` (the seams between
    units are crossfaded like those within one). `read(part)` gives its stored bytes.

    Written into one array as it goes, and a part's samples are let go once joined: the
    returned pieces keep their words and rate but no samples (the timings need no more), so
    joining holds about the book's samples once, not once per step."""
    total = sum(sum(part.lengths) for part in parts)
    out = np.empty(total, dtype=np.float32)
    filled = 0
    joiner = SeamJoiner()
    pieces: list[Audio] = []
    texts: list[str] = []
    rate = 0
    for index, part in enumerate(parts):
        if not part.lengths:
            continue
        data = read(part)
        if data is None:
            raise StorageError(f"part {index} of the job is gone from storage")
        samples = np.frombuffer(data, dtype="<f4")
        if len(samples) != sum(part.lengths):
            raise EngineError(f"part {index} holds {len(samples)} samples, not {sum(part.lengths)}")
        if rate and part.sample_rate != rate:
            raise EngineError("pieces of one job must share a sample rate")
        rate = part.sample_rate
        start = 0
        for text, length, words in zip(part.texts, part.lengths, part.words, strict=True):
            timed = None if words is None else tuple(Word(*w) for w in words)
            piece = Audio(samples=samples[start : start + length], sample_rate=rate, words=timed)
            start += length
            ready = joiner.add(piece)
            out[filled : filled + len(ready)] = ready
            filled += len(ready)
            pieces.append(Audio(samples=_NO_SAMPLES, sample_rate=rate, words=timed))
            texts.append(text)
        del data, samples
    if not pieces:
        reason = next((p.rejected for p in parts if p.rejected), None)
        raise InvalidText(reason or "no piece of the text could be spoken")
    rest = joiner.finish()
    out[filled : filled + len(rest)] = rest
    audio = Audio(samples=out[: filled + len(rest)], sample_rate=rate)
    return Spoken(audio=audio, texts=texts, pieces=pieces, starts=joiner.starts)


_NO_SAMPLES = np.zeros(0, dtype=np.float32)
