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
    units are crossfaded like those within one). `read(part)` gives its stored bytes."""
    joiner = SeamJoiner()
    chunks: list[np.ndarray] = []
    pieces: list[Audio] = []
    texts: list[str] = []
    for index, part in enumerate(parts):
        if not part.lengths:
            continue
        data = read(part)
        if data is None:
            raise StorageError(f"part {index} of the job is gone from storage")
        samples = np.frombuffer(data, dtype="<f4").astype(np.float32)
        if len(samples) != sum(part.lengths):
            raise EngineError(f"part {index} holds {len(samples)} samples, not {sum(part.lengths)}")
        if pieces and part.sample_rate != pieces[0].sample_rate:
            raise EngineError("pieces of one job must share a sample rate")
        start = 0
        for text, length, words in zip(part.texts, part.lengths, part.words, strict=True):
            piece = Audio(
                samples=samples[start : start + length],
                sample_rate=part.sample_rate,
                words=None if words is None else tuple(Word(*w) for w in words),
            )
            start += length
            chunks.append(joiner.add(piece))
            pieces.append(piece)
            texts.append(text)
    if not pieces:
        reason = next((p.rejected for p in parts if p.rejected), None)
        raise InvalidText(reason or "no piece of the text could be spoken")
    chunks.append(joiner.finish())
    audio = Audio(samples=np.concatenate(chunks), sample_rate=pieces[0].sample_rate)
    return Spoken(audio=audio, texts=texts, pieces=pieces, starts=joiner.starts)
