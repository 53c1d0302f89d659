"""A job's pieces: joined seam by seam exactly as in one go, grouped so the first comes
early, and timed without overlap over the whole audio."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pytest

from tasks.errors import FleetError, InvalidText
from tasks.timestamps import Granularity
from worker.audio import join
from worker.engines import Audio, SynthesisRequest, Word
from worker.pieces import SeamJoiner, groups, synthesize_in_order, timestamps

RATE = 16000


def piece(n: int, seed: int, words: tuple[Word, ...] | None = None) -> Audio:
    rng = np.random.default_rng(seed)
    samples = rng.uniform(-0.5, 0.5, n).astype(np.float32)
    return Audio(samples=samples, sample_rate=RATE, words=words)


@pytest.mark.parametrize("sizes", [[8000], [8000, 4000, 12000], [8000, 50, 3, 9000], [30, 40]])
def test_seam_joiner_equals_join(sizes: list[int]) -> None:
    pieces = [piece(n, i) for i, n in enumerate(sizes)]
    joiner = SeamJoiner()
    parts = [joiner.add(p) for p in pieces] + [joiner.finish()]
    np.testing.assert_array_equal(np.concatenate(parts), join(pieces).samples)
    assert joiner.starts[0] == 0 and len(joiner.starts) == len(pieces)


def test_groups_grow_from_one_to_the_largest() -> None:
    assert [len(g) for g in groups(20, 4)] == [1, 2, 4, 4, 4, 4, 1]
    assert [i for g in groups(20, 4) for i in g] == list(range(20))
    assert list(groups(0, 4)) == []


class Recorder:
    """Answers each request with its own length of audio; remembers the calls."""

    def __init__(self, reject: str = "") -> None:
        self.calls: list[list[str]] = []
        self.reject = reject

    def synthesize(self, requests: Sequence[SynthesisRequest]) -> list[Audio | FleetError]:
        self.calls.append([r.text for r in requests])
        return [
            InvalidText("no") if r.text == self.reject else piece(1000 * len(r.text), len(r.text))
            for r in requests
        ]


def test_samples_are_handed_on_in_order_as_each_group_ends() -> None:
    texts = [f"piece {i}." for i in range(6)]
    recorder = Recorder(reject="piece 4.")
    seen: list[int] = []
    progress: list[tuple[int, int, float]] = []
    spoken = synthesize_in_order(
        recorder,
        [SynthesisRequest(t, "v") for t in texts],
        largest_group=2,
        on_samples=lambda samples, rate: seen.append(len(samples)),
        on_piece=lambda done, total, audio_s: progress.append((done, total, audio_s)),
    )
    assert recorder.calls == [texts[0:1], texts[1:3], texts[3:5], texts[5:6]]
    assert [(done, total) for done, total, _ in progress] == [(1, 6), (3, 6), (5, 6), (6, 6)]
    assert progress[-1][2] == len(spoken.audio.samples) / RATE
    assert spoken.texts == [t for t in texts if t != "piece 4."]
    assert sum(seen) == len(spoken.audio.samples)
    np.testing.assert_array_equal(spoken.audio.samples, join(spoken.pieces).samples)


def check_items(items: list[tuple[float, float]], duration: float) -> None:
    assert items[0][0] >= 0 and items[-1][1] <= duration + 1e-9
    for (start, end), (next_start, _) in itertools.pairwise(items):
        assert start <= end <= next_start


def test_sentence_items_cover_the_audio_piece_by_piece() -> None:
    spoken = synthesize_in_order(
        Recorder(), [SynthesisRequest(t, "v") for t in ["One.", "Two two.", "Three."]], 4
    )
    found = timestamps(spoken, len(spoken.audio.samples))
    duration = len(spoken.audio.samples) / RATE
    assert found.granularity is Granularity.SENTENCE
    assert [i.text for i in found.items] == ["One.", "Two two.", "Three."]
    check_items([(i.start_s, i.end_s) for i in found.items], duration)
    assert found.items[0].start_s == 0 and found.items[-1].end_s == pytest.approx(
        duration, abs=1e-3
    )


def test_word_items_are_shifted_to_their_piece_and_never_overlap() -> None:
    class Worded(Recorder):
        def synthesize(self, requests: Sequence[SynthesisRequest]) -> list[Audio | FleetError]:
            # Each piece's last word runs to its very end: the seam's crossfade overlaps it.
            return [piece(16000, 1, (Word("a", 0.1, 0.5), Word("b", 0.6, 1.0))) for _ in requests]

    spoken = synthesize_in_order(Worded(), [SynthesisRequest("a b", "v")] * 3, 4)
    found = timestamps(spoken, len(spoken.audio.samples))
    assert found.granularity is Granularity.WORD
    assert [i.text for i in found.items] == ["a", "b"] * 3
    check_items([(i.start_s, i.end_s) for i in found.items], len(spoken.audio.samples) / RATE)
    # The second piece starts 1 s minus one 10 ms crossfade in.
    assert found.items[2].start_s == pytest.approx(0.99 + 0.1, abs=1e-3)


def test_items_end_within_the_stored_files_duration() -> None:
    """The stored file is resampled and its duration rounded to the millisecond: the last
    item ends within that, never past the end of the audio a client downloads."""
    spoken = synthesize_in_order(
        Recorder(), [SynthesisRequest(t, "v") for t in ["One.", "Two two."]], 4
    )
    native = len(spoken.audio.samples) / RATE
    stored = round(native, 3) - 0.001  # e.g. 1.0565 at 48 kHz where it was 1.0567 here
    found = timestamps(spoken, len(spoken.audio.samples), stored)
    assert found.items[-1].end_s == stored
    check_items([(i.start_s, i.end_s) for i in found.items], stored)
