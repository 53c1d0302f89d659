"""When each word (or sentence) of a job is spoken: stored with the job, served as JSON,
WebVTT or SubRip captions.

Kept in Redis beside the record (not in its hash, so a status poll stays one small
HGETALL), under the job's storage key so a cache hit copies its source's timings with the
audio (worker.runner).
"""

from __future__ import annotations

from enum import StrEnum
from typing import cast

import redis
from pydantic import BaseModel, ConfigDict

from tasks import keys
from tasks.text import SENTENCE_FINAL


class Granularity(StrEnum):
    # The engine reported per-token durations (VITS): each item is one word.
    WORD = "word"
    # No durations: each item is one sentence (or one piece of a sentence too long to say
    # in one go), bounded where its piece's audio starts and ends.
    SENTENCE = "sentence"


class TimedText(BaseModel):
    model_config = ConfigDict(frozen=True)

    text: str
    start_s: float
    end_s: float


class Timestamps(BaseModel):
    """Items in speaking order, none overlapping the next; granularity stated, never mixed."""

    model_config = ConfigDict(frozen=True)

    granularity: Granularity
    items: list[TimedText]


def save(client: redis.Redis, storage_key: str, timestamps: Timestamps, ttl_s: int) -> None:
    client.set(keys.timestamps_key(storage_key), timestamps.model_dump_json(), ex=ttl_s)


def copy(client: redis.Redis, source_key: str, target_key: str) -> bool:
    """The timings of cached audio reused under another job's key (Redis COPY, >= 6.2)."""
    source, target = keys.timestamps_key(source_key), keys.timestamps_key(target_key)
    return source == target or bool(client.copy(source, target, replace=True))


def parse(raw: str | bytes | None) -> Timestamps | None:
    return None if raw is None else Timestamps.model_validate_json(raw)


def load(client: redis.Redis, storage_key: str) -> Timestamps | None:
    return parse(cast(str | None, client.get(keys.timestamps_key(storage_key))))


def by_sentence(timestamps: Timestamps) -> Timestamps:
    """Word items joined into sentences, each from its first word's start to its last
    word's end; a sentence ends at a word ending in . ! ? … (tasks.text splits a text by
    the same marks, but a line break is no longer seen here). Sentence items as they are."""
    if timestamps.granularity is Granularity.SENTENCE:
        return timestamps
    sentences: list[TimedText] = []
    words: list[TimedText] = []
    for index, word in enumerate(timestamps.items):
        words.append(word)
        if word.text.endswith(tuple(SENTENCE_FINAL)) or index == len(timestamps.items) - 1:
            text = " ".join(w.text for w in words)
            sentences.append(TimedText(text=text, start_s=words[0].start_s, end_s=word.end_s))
            words = []
    return Timestamps(granularity=Granularity.SENTENCE, items=sentences)


def _clock(seconds: float, decimal: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"


def _cue_text(text: str) -> str:
    # A blank line ends a cue in both formats, and "-->" opens a timing line.
    return " ".join(text.split()).replace("-->", "->")


def to_vtt(timestamps: Timestamps) -> str:
    """WebVTT (text/vtt): one cue per item."""
    lines = ["WEBVTT", ""]
    for item in timestamps.items:
        start, end = _clock(item.start_s, "."), _clock(item.end_s, ".")
        # "&" and "<" start entities and tags in a cue's text.
        text = _cue_text(item.text).replace("&", "&amp;").replace("<", "&lt;")
        lines += [f"{start} --> {end}", text, ""]
    return "\n".join(lines)


def to_srt(timestamps: Timestamps) -> str:
    """SubRip (application/x-subrip): numbered cues from 1."""
    lines = []
    for number, item in enumerate(timestamps.items, start=1):
        start, end = _clock(item.start_s, ","), _clock(item.end_s, ",")
        lines += [str(number), f"{start} --> {end}", _cue_text(item.text), ""]
    return "\n".join(lines)
