"""An Opus job's stream as one Ogg Opus stream (RFC 3533 pages, RFC 7845 mapping), made
by the API from the packets the workers publish (tasks.streams says why here).

Pages are written by hand (tasks.ogg): the format is a 27-byte header, a segment table and
a CRC, and the libraries that write them either bring a licence the API should not carry
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

from tasks.ogg import page
from tasks.streams import read_opus_records

_VENDOR = b"ttsfleet"
_BEGIN_OF_STREAM = 0x02
# A page holds at most 255 segments; an Opus packet (at most 1,275 bytes) takes at most 6.
_PACKETS_PER_PAGE = 40


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
