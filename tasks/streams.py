"""A job's audio as it is made: one Redis stream per job (worker.stream writes, api.streams
reads), so a listener hears the start of a long job before its end exists.

Entries, in order: `{"i": 0, "d": <container header and first bytes>}`, `{"i": n, "d":
<bytes>}`, ..., then `{"end": <terminal status>}`. A retried job writes its entries again
from `i` 0; a reader relays each `i` once, in order. A long job (tasks.units) writes
`{"units": n}` on its own stream when it fans out, then its end; each unit writes its own
stream (under the unit's id) as a job does, the first unit's with the container header.
The stream is trimmed to a bounded length and expires (`stream_ttl_s` while written,
`STREAM_LINGER_S` after its end), after which a finished job is served from storage.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

from tasks import keys
from tasks.jobs import AudioFormat

# How long a finished job's stream stays for listeners that arrive just as it ends.
STREAM_LINGER_S = 60

# Formats whose bytes can be sent before their length is known; any other job streams as
# WAV with an open length (its stored file keeps the asked format).
_STREAMABLE = {AudioFormat.WAV, AudioFormat.MP3, AudioFormat.PCM, AudioFormat.OPUS}


def stream_format(fmt: AudioFormat) -> AudioFormat:
    """The container a job's stream is sent in."""
    return fmt if fmt in _STREAMABLE else AudioFormat.WAV


Entry = dict[str | bytes, str | bytes | int]


def piece_entry(index: int, data: bytes) -> Entry:
    return {"i": index, "d": data}


def end_entry(status: str) -> Entry:
    return {"end": status}


def stream_key(job_id: str) -> str:
    return keys.audio_stream_key(job_id)


# An Opus job's entries hold Opus packets, not container bytes: a book's units are encoded
# by different workers at once, so only the reader, which relays them in order, can give
# them one Ogg stream's page numbers and granule positions (api.ogg). Each packet is framed
# by two little-endian uint16: its length, and the samples (48 kHz) it decodes to; a
# packet of 0 samples is the stream's OpusHead (RFC 7845), which the first unit sends.
_RECORD = struct.Struct("<HH")


def opus_records(packets: Iterable[tuple[int, bytes]]) -> bytes:
    """`(samples, packet)` pairs as an entry's bytes."""
    return b"".join(_RECORD.pack(len(packet), samples) + packet for samples, packet in packets)


def read_opus_records(data: bytes) -> Iterator[tuple[int, bytes]]:
    """An entry's `(samples, packet)` pairs, in order."""
    at = 0
    while at < len(data):
        length, samples = _RECORD.unpack_from(data, at)
        at += _RECORD.size
        yield samples, data[at : at + length]
        at += length
