"""Ogg pages (RFC 3533): the CRC, a page of whole packets, and a file's serial number made
from its content.

Both sides of an Ogg job use them: the API writes an Opus job's stream as pages (api.ogg),
and the worker gives the Ogg files libsndfile writes (Vorbis, Opus) a serial number of
their own content (worker.audio). libsndfile picks that number at random, the only thing
that differs between two encodes of the same samples; with it fixed, the same audio makes
the same file byte for byte, so two overlapping runs of one job that store the same
samples store the same bytes, and the sha256 either run records is the stored file's.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from typing import BinaryIO

# capture pattern, version, flags, granule position, serial, sequence, CRC, segment count
_HEADER = struct.Struct("<4sBBqIIIB")
_SERIAL = slice(14, 18)
_CRC = slice(22, 26)

# Byte values with their bits in reverse order, for zlib below.
_REVERSED = bytes(int(f"{byte:08b}"[::-1], 2) for byte in range(256))


def ogg_crc(data: bytes | bytearray) -> int:
    """Ogg's CRC-32 (polynomial 0x04C11DB7, bits not reflected, starting from 0), by zlib's
    C code: zlib's CRC-32 is the same polynomial over bit-reversed bytes, from 0xFFFFFFFF,
    with its result inverted, and a CRC is affine in its input, so XORing out the CRC of
    as many zero bytes leaves the plain one, whose bits are then put back in order. A
    Python loop over the bytes would hold the event loop for seconds on a long book."""
    reflected = zlib.crc32(data.translate(_REVERSED)) ^ zlib.crc32(bytes(len(data)))
    return int(f"{reflected:032b}"[::-1], 2)


def page(serial: int, sequence: int, granule: int, packets: list[bytes], flags: int = 0) -> bytes:
    """One page holding whole packets (each packet's lacing: 255s, then the rest)."""
    lacing = bytearray()
    for packet in packets:
        lacing += b"\xff" * (len(packet) // 255) + bytes([len(packet) % 255])
    header = _HEADER.pack(b"OggS", 0, flags, granule, serial, sequence, 0, len(lacing))
    data = bytearray(header + lacing + b"".join(packets))
    struct.pack_into("<I", data, _CRC.start, ogg_crc(data))
    return bytes(data)


def _pages(file: BinaryIO) -> Iterator[tuple[int, bytearray]]:
    """Each page of the file, from its start, with its offset."""
    offset = file.seek(0)
    while header := file.read(_HEADER.size):
        if len(header) < _HEADER.size or header[:4] != b"OggS":
            raise ValueError(f"no Ogg page at byte {offset}")
        lacing = file.read(header[-1])
        data = bytearray(header + lacing + file.read(sum(lacing)))
        yield offset, data
        offset += len(data)


def stamp_serial(file: BinaryIO) -> int:
    """Give every page of a one-stream Ogg file the serial number made of its content (the
    CRC-32 of its pages with serial and CRC zeroed), their CRCs anew; returns the number.
    Rewrites pages in place: one read to hash, one to rewrite, a page in memory at a time."""
    serials: set[bytes] = set()
    digest = 0
    for _, data in _pages(file):
        serials.add(bytes(data[_SERIAL]))
        data[_SERIAL] = data[_CRC] = bytes(4)
        digest = zlib.crc32(data, digest)
    if len(serials) > 1:
        raise ValueError(f"{len(serials)} logical streams in one file; stamp one")
    for offset, data in _pages(file):
        struct.pack_into("<I", data, _SERIAL.start, digest)
        data[_CRC] = bytes(4)
        struct.pack_into("<I", data, _CRC.start, ogg_crc(data))
        file.seek(offset)
        file.write(data)  # the same length: the next page starts where this one ends
    return digest
