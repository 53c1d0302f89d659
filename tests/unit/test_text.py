"""Long texts are cut at sentence bounds into pieces no longer than the limit."""

from __future__ import annotations

import numpy as np

from tasks.text import split_text
from worker.audio import join
from worker.engines import Audio


def test_short_text_is_one_piece() -> None:
    assert split_text("  Hello there. How are you?  ") == ["Hello there. How are you?"]


def test_long_text_splits_at_sentence_bounds_within_the_limit() -> None:
    sentences = [f"This is sentence number {i}, which says a little something." for i in range(12)]
    text = " ".join(sentences)
    pieces = split_text(text, limit=130)
    assert len(pieces) > 1 and all(len(p) <= 130 for p in pieces)
    assert all(p.endswith(".") for p in pieces)
    assert " ".join(pieces).split() == text.split()


def test_overlong_sentence_is_cut_at_clauses_then_spaces() -> None:
    text = ", ".join(["word " * 15] * 6)
    pieces = split_text(text, limit=100)
    assert all(len(p) <= 100 for p in pieces)
    assert " ".join(pieces).split() == text.split()
    assert split_text("x" * 250, limit=100) == ["x" * 100, "x" * 100, "x" * 50]


def test_line_breaks_are_bounds_and_do_not_reach_the_engine() -> None:
    text = "Chapter One\n" + "It was a quiet morning in the valley. " * 10
    pieces = split_text(text, limit=120)
    assert pieces[0].startswith("Chapter One It was")
    assert all("\n" not in p and len(p) <= 120 for p in pieces)
    assert " ".join(pieces).split() == text.split()


def test_join_crossfades_without_a_click() -> None:
    rate = 16000
    high = Audio(np.full(1600, 0.5, np.float32), rate)
    low = Audio(np.full(1600, -0.5, np.float32), rate)
    joined = join([high, low, high])
    overlap = int(rate * 0.010)
    assert len(joined.samples) == 3 * 1600 - 2 * overlap
    # A hard cut would jump by 1.0 in one sample; the crossfade spreads it over 10 ms.
    assert float(np.max(np.abs(np.diff(joined.samples)))) < 2.0 / overlap
