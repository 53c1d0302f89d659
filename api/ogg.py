"""An Opus job's stream as one Ogg Opus stream (RFC 3533 pages, RFC 7845 mapping), made
by the API from the packets the workers publish (tasks.streams says why here).

Pages are written by hand: the format is a 27-byte header, a segment table and a CRC,
and the libraries that write them either bring a licence the API should not carry
(mutagen: GPL) or need the codec's setup pushed through a muxer (PyAV) for what is a
few lines. Each relayed entry becomes one page (or one per 40 packets, at most 240 of a
page's 255 segments), so a listener gets audio as soon as the worker published it;
granule positions count the 48 kHz samples of every packet so far, pre-skip included, as
RFC 7845 asks. The stream ends without an end-of-stream page (its last page is sent as
soon as its packets come, before the reader knows it is the last): decoders read to the
end of the body, and the last packet's padding (under 20 ms) is played rather than
trimmed.
"""

from __future__ import annotations

import secrets
import struct
import zlib

from tasks.streams import read_opus_records

_VENDOR = b"ttsfleet"
_BEGIN_OF_STREAM = 0x02
# A page holds at most 255 segments; an Opus packet (at most 1,275 bytes) takes at most 6.
_PACKETS_PER_PAGE = 40


# Byte values with their bits in reverse order, for zlib below.
_REVERSED = bytes(int(f"{byte:08b}"[::-1], 2) for byte in range(256))


def ogg_crc(data: bytes) -> int:
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
    header = struct.pack("<4sBBqIIIB", b"OggS", 0, flags, granule, serial, sequence, 0,
                         len(lacing))  # fmt: skip
    data = bytearray(header + lacing + b"".join(packets))
    struct.pack_into("<I", data, 22, ogg_crc(bytes(data)))
    return bytes(data)


class OggOpusWriter:
    """Entries' Opus records in, Ogg pages out, in order."""

    def __init__(self, serial: int | None = None) -> None:
        self.serial = secrets.randbits(32) if serial is None else serial
        self._sequence = 0
        self.granule = 0

    def _page(self, packets: list[bytes], flags: int = 0) -> bytes:
        out = page(self.serial, self._sequence, self.granule, packets, flags)
        self._sequence += 1
        return out

    def feed(self, entry: bytes) -> bytes:
        out = bytearray()
        packets: list[bytes] = []
        for samples, packet in read_opus_records(entry):
            if samples == 0:  # OpusHead: the first page alone, then the comment header's
                out += self._page([packet], _BEGIN_OF_STREAM)
                tags = b"OpusTags" + struct.pack("<I", len(_VENDOR)) + _VENDOR + bytes(4)
                out += self._page([tags])
                continue
            packets.append(packet)
            self.granule += samples
            if len(packets) == _PACKETS_PER_PAGE:
                out += self._page(packets)
                packets = []
        if packets:
            out += self._page(packets)
        return bytes(out)
