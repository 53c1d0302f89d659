"""Ogg Opus streams as the API writes them (api.ogg) around the packets workers publish
(worker.stream): pages an independent reader accepts, one stream across a book's units."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import soundfile

from api.ogg import OggOpusWriter
from tasks.jobs import AudioFormat
from tasks.ogg import ogg_crc, page, stamp_serial
from tasks.streams import opus_records, read_opus_records
from tests.helpers import audio_probe
from worker.stream import StreamEncoder


def tone(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate), dtype=np.float32) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def pages_of(data: bytes) -> list[bytes]:
    """The stream cut at each page's bounds, read from the page headers."""
    pages, at = [], 0
    while at < len(data):
        count = data[at + 26]
        size = 27 + count + sum(data[at + 27 : at + 27 + count])
        pages.append(data[at : at + size])
        at += size
    return pages


def test_the_crc_is_oggs_own() -> None:
    """Every page libsndfile writes in an Ogg Opus file carries the CRC ogg_crc computes."""
    buffer = io.BytesIO()
    soundfile.write(buffer, tone(2.0, 48000), 48000, format="OGG", subtype="OPUS")
    written = pages_of(buffer.getvalue())
    assert len(written) >= 3
    for one in written:
        blank = one[:22] + bytes(4) + one[26:]
        assert ogg_crc(blank) == struct.unpack_from("<I", one, 22)[0]


def test_a_page_laces_packets_of_255_bytes_and_more() -> None:
    packets = [b"a" * 255, b"b" * 10, b"c" * 600]
    one = page(serial=7, sequence=3, granule=960, packets=packets)
    assert one[26] == 2 + 1 + 3 and list(one[27:33]) == [255, 0, 10, 255, 255, 90]
    assert one[33:] == b"".join(packets)
    assert struct.unpack_from("<qII", one, 6) == (960, 7, 3)


def test_a_stamped_file_has_one_serial_of_its_content_and_valid_pages() -> None:
    """libsndfile's random serial becomes one made of the pages: every page carries it,
    every CRC is right again, and the audio decodes as before."""
    original = io.BytesIO()
    soundfile.write(original, tone(2.0, 48000), 48000, format="OGG", subtype="OPUS")
    stamped = io.BytesIO(original.getvalue())
    serial = stamp_serial(stamped)
    written = pages_of(stamped.getvalue())
    assert len(written) == len(pages_of(original.getvalue())) >= 3
    for one in written:
        assert struct.unpack_from("<I", one, 14)[0] == serial
        assert ogg_crc(one[:22] + bytes(4) + one[26:]) == struct.unpack_from("<I", one, 22)[0]
    before, _ = soundfile.read(io.BytesIO(original.getvalue()), dtype="float32")
    after, _ = soundfile.read(io.BytesIO(stamped.getvalue()), dtype="float32")
    assert np.array_equal(before, after)
    assert stamp_serial(stamped) == serial  # stamping again changes nothing


def test_two_encodes_of_the_same_audio_stamp_the_same_bytes_and_others_differ() -> None:
    def stamped(samples: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        soundfile.write(buffer, samples, 48000, format="OGG", subtype="VORBIS")
        stamp_serial(buffer)
        return buffer.getvalue()

    assert stamped(tone(1.0, 48000)) == stamped(tone(1.0, 48000))
    other = stamped(tone(1.0, 48000) * 0.5)
    assert other[14:18] != stamped(tone(1.0, 48000))[14:18]


def test_stamping_refuses_what_is_not_one_ogg_stream() -> None:
    chained = io.BytesIO()
    for seconds in (0.5, 0.7):  # two files end to end: two logical streams
        one = io.BytesIO()
        soundfile.write(one, tone(seconds, 48000), 48000, format="OGG", subtype="OPUS")
        chained.write(one.getvalue())
    with pytest.raises(ValueError, match="2 logical streams"):
        stamp_serial(chained)
    wav = io.BytesIO()
    soundfile.write(wav, tone(0.5, 48000), 48000, format="WAV")
    with pytest.raises(ValueError, match="no Ogg page at byte 0"):
        stamp_serial(wav)


def test_records_frame_packets_and_read_back() -> None:
    packets = [(0, b"OpusHead..."), (960, b"\x01" * 300), (960, b"")]
    assert list(read_opus_records(opus_records(packets))) == packets


def stream(units: int, seconds: float, rate: int) -> bytes:
    """`units` encoders (the first with the OpusHead) fed stretches, relayed in order."""
    writer, data = OggOpusWriter(), b""
    for unit in range(units):
        encoder = StreamEncoder(
            AudioFormat.OPUS, 48000, header=unit == 0, followed=unit < units - 1
        )
        for _ in range(4):
            data += writer.feed(encoder.encode(tone(seconds / 4, rate), rate))
        data += writer.feed(encoder.encode(np.zeros(0, np.float32), rate, last=True))
    return data


def test_an_opus_job_streams_as_one_ogg_opus_stream() -> None:
    data = stream(units=1, seconds=1.2, rate=22050)
    found = audio_probe.probe(data)
    assert (found.codec, found.container, found.sample_rate) == ("opus", "ogg", 48000)
    # All of it, plus at most the last packet's padding (20 ms): no end trimming is sent.
    assert 1.2 <= found.duration_s < 1.2 + 0.021
    granules = [struct.unpack_from("<q", p, 6)[0] for p in pages_of(data)]
    assert granules[:2] == [0, 0] and granules == sorted(granules)


def test_a_books_units_continue_one_ogg_stream() -> None:
    """Three units' packets in one logical stream: one serial, pages numbered on, granules
    rising. These units sound to their very ends, so nothing of them is left out at a
    seam, and each later unit's encoder adds its own look-ahead and padding there (the
    seams of units that end and start quiet: tests/unit/test_stream_encoder.py)."""
    data = stream(units=3, seconds=1.0, rate=16000)
    pages = pages_of(data)
    assert len({struct.unpack_from("<I", p, 14)[0] for p in pages}) == 1
    assert [struct.unpack_from("<I", p, 18)[0] for p in pages] == list(range(len(pages)))
    assert sum(p[5] & 0x02 == 0x02 for p in pages) == 1  # one beginning of stream
    decoded = audio_probe.decode(data)
    assert 3 * 48000 <= len(decoded) < 3 * 48000 + 3 * (960 + 312)


def test_an_entry_of_many_packets_spans_pages_each_with_its_granule() -> None:
    """Past 40 packets (a catching-up reader's long entry) a page ends: each page's
    granule counts the samples of every packet completed on it or before."""
    writer = OggOpusWriter(serial=5)
    head = writer.feed(opus_records([(0, b"OpusHead" + bytes(11))]))
    data = writer.feed(opus_records([(960, bytes([i]) * 100) for i in range(100)]))
    pages = pages_of(data)
    assert len(pages_of(head)) == 2 and len(pages) == 3
    assert [struct.unpack_from("<qII", p, 6) for p in pages] == [
        (40 * 960, 5, 2), (80 * 960, 5, 3), (100 * 960, 5, 4),
    ]  # fmt: skip
    assert b"".join(p[27 + p[26] :] for p in pages) == b"".join(
        bytes([i]) * 100 for i in range(100)
    )
