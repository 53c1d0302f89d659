"""Captions from timestamps parse with the well-kept parsers of each format."""

from __future__ import annotations

import io

import srt
import webvtt

from tasks.timestamps import Granularity, TimedText, Timestamps, by_sentence, to_srt, to_vtt

ITEMS = Timestamps(
    granularity=Granularity.WORD,
    items=[
        TimedText(text="Hello,", start_s=0.0, end_s=0.48),
        TimedText(text="a --> b & <c>", start_s=0.5, end_s=1.25),
        TimedText(text="two\n\nlines", start_s=1.25, end_s=3725.5),
    ],
)


def test_vtt_parses_with_webvtt_py() -> None:
    captions = webvtt.from_buffer(io.StringIO(to_vtt(ITEMS)))
    assert [(c.start, c.end) for c in captions] == [
        ("00:00:00.000", "00:00:00.480"),
        ("00:00:00.500", "00:00:01.250"),
        ("00:00:01.250", "01:02:05.500"),
    ]
    assert captions[0].text == "Hello," and captions[2].text == "two lines"


def test_srt_parses_with_srt() -> None:
    subtitles = list(srt.parse(to_srt(ITEMS)))
    assert [s.index for s in subtitles] == [1, 2, 3]
    assert [s.start.total_seconds() for s in subtitles] == [0.0, 0.5, 1.25]
    assert subtitles[2].end.total_seconds() == 3725.5
    assert subtitles[1].content == "a -> b & <c>"


def words(*spans: tuple[str, float, float]) -> Timestamps:
    items = [TimedText(text=t, start_s=s, end_s=e) for t, s, e in spans]
    return Timestamps(granularity=Granularity.WORD, items=items)


def test_words_join_into_sentences_at_their_final_marks() -> None:
    found = by_sentence(
        words(("Hello", 0.0, 0.4), ("there.", 0.4, 0.9), ("Who", 1.0, 1.2), ("is", 1.2, 1.3),
              ("it?", 1.3, 1.6), ("Me\u2026", 1.7, 2.0), ("e.g", 2.1, 2.3), ("no", 2.3, 2.5),
              ("end", 2.5, 2.9))
    )  # fmt: skip
    assert found.granularity is Granularity.SENTENCE
    assert [(i.text, i.start_s, i.end_s) for i in found.items] == [
        ("Hello there.", 0.0, 0.9),
        ("Who is it?", 1.0, 1.6),
        ("Me\u2026", 1.7, 2.0),
        ("e.g no end", 2.1, 2.9),  # the last words end a sentence of their own
    ]


def test_sentences_stay_as_they_are() -> None:
    sentences = Timestamps(granularity=Granularity.SENTENCE, items=ITEMS.items)
    assert by_sentence(sentences) == sentences
    assert by_sentence(words()).items == []
