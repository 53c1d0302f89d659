"""How `ttsfleet batch` reads its input file: plain lines, JSON lines, names, options."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.batch import BatchFileError, read_lines


def test_plain_and_json_lines_with_options_and_names(tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text(
        'Hello.\n\n{"text": "Bonjour.", "format": "mp3", "output": "../fr.mp3"}\n  Bye.  \n'
    )
    lines = read_lines(source, tmp_path / "out", {"format": "flac", "speed": 1.5})
    assert [(line.number, line.output.name) for line in lines] == [
        (1, "000001.flac"), (3, "fr.mp3"), (4, "000004.flac"),
    ]  # fmt: skip
    # The line's own options win; a name never leaves the output folder.
    assert lines[1].request == {"format": "mp3", "speed": 1.5, "text": "Bonjour."}
    assert lines[1].output.parent == tmp_path / "out"
    assert lines[2].request["text"] == "Bye."


def test_a_broken_json_line_names_its_number(tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text('ok\n{"text": \n')
    with pytest.raises(BatchFileError, match=r"in.txt:2: not a JSON object"):
        read_lines(source, tmp_path, {})


def test_a_file_that_cannot_be_read_as_text_is_a_batch_file_error(tmp_path: Path) -> None:
    with pytest.raises(BatchFileError, match=r"nonexist\.txt: No such file"):
        read_lines(tmp_path / "nonexist.txt", tmp_path, {})
    binary = tmp_path / "audio.wav"
    binary.write_bytes(b"RIFF\xff\xfe\x00")
    with pytest.raises(BatchFileError, match="not UTF-8 text"):
        read_lines(binary, tmp_path, {})
