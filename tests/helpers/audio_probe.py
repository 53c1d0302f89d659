"""An independent decoder for tests: Debian's ffprobe and ffmpeg (not libsndfile or PyAV,
which made the files), reading what a client would receive."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest


@dataclass(frozen=True)
class Probed:
    codec: str
    container: str
    sample_rate: int
    channels: int
    bits_per_sample: int
    duration_s: float  # samples decoded / rate: what a player actually plays


@dataclass(frozen=True)
class Loudness:
    integrated_lufs: float
    true_peak_dbtp: float


def _ffmpeg(tool: str) -> str:
    binary = shutil.which(tool)
    if binary is None:
        pytest.fail(f"{tool} is missing (make test installs ffmpeg with apt-get)")
    return binary


def _input_args(path: Path, raw_rate: int | None) -> list[str]:
    """Raw PCM has no header: say what it is (s16le mono at `raw_rate`)."""
    if raw_rate is None:
        return ["-i", str(path)]
    return ["-f", "s16le", "-ar", str(raw_rate), "-ac", "1", "-i", str(path)]


def probe(data: bytes, raw_rate: int | None = None) -> Probed:
    """What ffprobe says of the stream, and how many samples ffmpeg decodes from it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "audio"
        path.write_bytes(data)
        args = [_ffmpeg("ffprobe"), "-v", "error", "-show_streams", "-show_format"]
        if raw_rate is not None:
            args += ["-f", "s16le", "-ar", str(raw_rate), "-ac", "1"]
        info = json.loads(
            subprocess.run(
                [*args, "-of", "json", str(path)], capture_output=True, check=True, text=True
            ).stdout
        )
        stream = info["streams"][0]
        rate = int(stream["sample_rate"])
        pcm = subprocess.run(
            [_ffmpeg("ffmpeg"), "-v", "error", *_input_args(path, raw_rate),
             "-f", "s16le", "-ac", str(stream["channels"]), "-"],
            capture_output=True, check=True,
        ).stdout  # fmt: skip
    return Probed(
        codec=stream["codec_name"],
        container=info["format"]["format_name"],
        sample_rate=rate,
        channels=int(stream["channels"]),
        bits_per_sample=int(stream.get("bits_per_sample") or 0),
        duration_s=len(pcm) / 2 / int(stream["channels"]) / rate,
    )


def loudness(data: bytes, raw_rate: int | None = None) -> Loudness:
    """ffmpeg's own EBU R128 meter (`ebur128=peak=true`): integrated loudness, true peak."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "audio"
        path.write_bytes(data)
        log = subprocess.run(
            [_ffmpeg("ffmpeg"), "-nostats", "-hide_banner", *_input_args(path, raw_rate),
             "-af", "ebur128=peak=true", "-f", "null", "-"],
            capture_output=True, check=True, text=True,
        ).stderr  # fmt: skip
    summary = log[log.rindex("Summary:") :]
    lufs = float(summary.split("I:")[1].split("LUFS")[0])
    peak = float(summary.split("Peak:")[1].split("dBFS")[0])
    return Loudness(lufs, peak)


def decode(data: bytes) -> npt.NDArray[np.int16]:
    """The mono 16-bit samples ffmpeg decodes, to compare audio itself (libsndfile sizes an
    MP3 without a LAME tag, such as a stream, from its first frame, and reads it short)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "audio"
        path.write_bytes(data)
        pcm = subprocess.run(
            [_ffmpeg("ffmpeg"), "-v", "error", "-i", str(path), "-f", "s16le", "-ac", "1", "-"],
            capture_output=True, check=True,
        ).stdout  # fmt: skip
    return np.frombuffer(pcm, dtype="<i2")
