"""Long texts: split at sentence bounds into pieces an engine synthesizes as one batch, and
a book's pieces grouped into units that any worker may take (tasks.units). In the contract
because the split is made once and both a worker and the tests reproduce it."""

from __future__ import annotations

import re

# A sentence ends at . ! ? … (or their CJK forms) followed by space, or at a line break.
SENTENCE_FINAL = ".!?\u2026\u3002\uff01\uff1f"
_SENTENCE_END = re.compile(rf"(?<=[{SENTENCE_FINAL}])\s+|\n\s*")
_CLAUSE_END = re.compile(r"(?<=[,;:\uff0c\uff1b\uff1a])\s+")

PIECE_CHARS = 300


def _cut(text: str, limit: int) -> list[str]:
    """A sentence longer than `limit`: cut at clause bounds, then at spaces, then hard."""
    if len(text) <= limit:
        return [text]
    for pattern in (_CLAUSE_END, re.compile(r"\s+")):
        parts = [p for p in pattern.split(text) if p]
        if len(parts) > 1:
            return _pack(parts, limit)
    return [text[i : i + limit] for i in range(0, len(text), limit)]


def _pack(parts: list[str], limit: int) -> list[str]:
    """Greedily join consecutive parts into pieces of at most `limit` characters."""
    pieces: list[str] = []
    current = ""
    for part in parts:
        for chunk in _cut(part, limit):
            if current and len(current) + 1 + len(chunk) > limit:
                pieces.append(current)
                current = chunk
            else:
                current = f"{current} {chunk}" if current else chunk
    if current:
        pieces.append(current)
    return pieces


def split_text(text: str, limit: int = PIECE_CHARS) -> list[str]:
    """Pieces of at most `limit` characters, cut at sentence bounds where possible; a text
    that fits is one piece (its prosody stays whole)."""
    text = text.strip()
    if len(text) <= limit and "\n" not in text:
        return [text]
    sentences = [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]
    return _pack(sentences, limit)


def group_pieces(pieces: list[str], limit: int) -> list[list[str]]:
    """Consecutive pieces packed into groups of at most `limit` characters (a piece longer
    than `limit` is a group of its own): the units a long job fans out into. The pieces
    themselves are not cut again, so the units' pieces are exactly the job's pieces."""
    groups: list[list[str]] = []
    size = 0
    for piece in pieces:
        if groups and size + len(piece) <= limit:
            groups[-1].append(piece)
            size += len(piece)
        else:
            groups.append([piece])
            size = len(piece)
    return groups
