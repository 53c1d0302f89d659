"""A unit's part (tasks.units) as the worker keeps it: the raw samples of its spoken pieces
end to end (little-endian float32, so the joined book is sample for sample what one run of
all its pieces would make), and the book joined from its parts in order, block by block,
never whole in memory."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from tasks.errors import EngineError, InvalidText, StorageError
from tasks.units import Part
from worker.audio import StreamResampler
from worker.engines import Audio, Word
from worker.loudness import normalize_stream
from worker.pieces import Samples, SeamJoiner, Spoken


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


class Joining:
    """The book from its parts, in order, through one `SeamJoiner` (the seams between units
    are crossfaded like those within one). `read(part)` gives a part's stored bytes.

    Iterating yields the joined samples block by block, a part's worth at a time, so the
    book is never whole in memory: an encoder writes each block out (worker.audio's
    AudioWriter) and the part is let go. Once iterated, `spoken` holds each piece's words,
    rate and place in the book but no samples (the timings need no more)."""

    def __init__(self, parts: Sequence[Part], read: Callable[[Part], bytes | None]) -> None:
        self._parts = parts
        self._read = read
        self._joiner = SeamJoiner()
        self._pieces: list[Audio] = []
        self._texts: list[str] = []
        self.length = 0
        spoken = [part for part in parts if part.lengths]
        if not spoken:
            reason = next((p.rejected for p in parts if p.rejected), None)
            raise InvalidText(reason or "no piece of the text could be spoken")
        self.sample_rate = spoken[0].sample_rate
        if any(part.sample_rate != self.sample_rate for part in spoken):
            raise EngineError("pieces of one job must share a sample rate")

    def __iter__(self) -> Iterator[Samples]:
        for index, part in enumerate(self._parts):
            if not part.lengths:
                continue
            data = self._read(part)
            if data is None:
                raise StorageError(f"part {index} of the job is gone from storage")
            samples = np.frombuffer(data, dtype="<f4")
            if len(samples) != sum(part.lengths):
                raise EngineError(
                    f"part {index} holds {len(samples)} samples, not {sum(part.lengths)}"
                )
            block = self._add(part, samples)
            del data, samples
            yield block
        yield self._emit(self._joiner.finish())

    def _add(self, part: Part, samples: Samples) -> Samples:
        ready: list[Samples] = []
        start = 0
        for text, length, words in zip(part.texts, part.lengths, part.words, strict=True):
            timed = None if words is None else tuple(Word(*w) for w in words)
            piece = Audio(samples=samples[start : start + length], sample_rate=self.sample_rate,
                          words=timed)  # fmt: skip
            start += length
            ready.append(self._emit(self._joiner.add(piece)))
            self._pieces.append(Audio(samples=_NO_SAMPLES, sample_rate=self.sample_rate,
                                      words=timed))  # fmt: skip
            self._texts.append(text)
        return np.concatenate(ready)

    def _emit(self, samples: Samples) -> Samples:
        self.length += len(samples)
        return samples

    @property
    def spoken(self) -> Spoken:
        """The pieces' texts, words and starts; the audio itself is what was iterated."""
        audio = Audio(samples=_NO_SAMPLES, sample_rate=self.sample_rate)
        return Spoken(audio=audio, texts=self._texts, pieces=self._pieces,
                      starts=self._joiner.starts)  # fmt: skip


def blocks_at(joining: Joining, rate: int, loudness_lufs: float | None) -> Iterator[Samples]:
    """The book's samples at `rate`, leveled to `loudness_lufs` if set: what
    `worker.audio.encode` does to one job's audio before encoding it, block by block.

    Leveling needs the whole book's measure, so a leveled book is first spooled as float32
    (4 bytes a sample, in TMPDIR) and read again for each of the leveling's passes
    (worker.loudness.normalize_stream)."""
    resample = StreamResampler(joining.sample_rate, rate)
    if loudness_lufs is None:
        for block in joining:
            yield resample(block)
        yield resample(_NO_SAMPLES, last=True)
        return
    with tempfile.TemporaryFile(prefix="ttsfleet-samples-") as spool:
        for block in joining:
            spool.write(resample(block).astype("<f4").tobytes())
        spool.write(resample(_NO_SAMPLES, last=True).astype("<f4").tobytes())
        spool.flush()
        size = spool.tell()

        def read() -> Iterator[Samples]:
            # Plain reads, not a memory map: a map's pages would count as the process's.
            for offset in range(0, size, _PASS_BYTES):
                yield np.frombuffer(os.pread(spool.fileno(), _PASS_BYTES, offset), "<f4")

        yield from normalize_stream(read, rate, loudness_lufs)


_NO_SAMPLES = np.zeros(0, dtype=np.float32)
# What a leveling pass reads at a time: 2**18 samples, about 12 s at 22.05 kHz.
_PASS_BYTES = 4 << 18
