"""What joining a book costs in memory, side by side: the streamed join every book takes
(`worker.parts.Joining` and `blocks_at` into `worker.audio.AudioWriter`, a spool file, the
file hashed), the same leveled to -16 LUFS (a float32 spool read again for each leveling
pass), and the book joined whole in memory and encoded by `worker.audio.encode` (what
joining did before), each in a process of its own, as the growth of its peak RSS over
its baseline, with its time.

    python -m bench.join_memory [--hours 1 4] [--format wav]

Parts are made on demand from a seeded generator (a stand-in for storage reads, which
return each part's bytes in turn): no process holds the book before it joins it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

from tasks.jobs import AudioFormat
from tasks.units import Part
from worker import parts
from worker.audio import AudioWriter, encode
from worker.engines import Audio

RATE = 22050
PARTS_PER_HOUR = 60  # a unit of ~1,000 characters is about a minute of speech
PIECES_PER_PART = 4
MODES = ("stream", "leveled", "memory")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def book(hours: float) -> tuple[list[Part], dict[str, int]]:
    count = max(2, round(PARTS_PER_HOUR * hours))
    length = int(RATE * 3600 * hours) // (count * PIECES_PER_PART)
    made = [
        Part(key=str(i), sample_rate=RATE, texts=["x"] * PIECES_PER_PART,
             lengths=[length] * PIECES_PER_PART, words=[None] * PIECES_PER_PART)
        for i in range(count)
    ]  # fmt: skip
    return made, {"parts": count, "samples": count * PIECES_PER_PART * length}


def read(part: Part) -> bytes:
    rng = np.random.default_rng(int(part.key))
    return (rng.standard_normal(sum(part.lengths)) * 0.1).astype("<f4").tobytes()


def measure(hours: float, fmt: AudioFormat, mode: str) -> dict[str, float]:
    """One join in this process: its peak RSS growth and what it wrote."""
    made, _ = book(hours)
    base, start = peak_mb(), time.perf_counter()
    if mode in ("stream", "leveled"):
        with tempfile.TemporaryFile() as spool:
            joining = parts.Joining(made, read)
            writer = AudioWriter(spool, fmt, RATE, RATE)
            for block in parts.blocks_at(joining, RATE, -16.0 if mode == "leveled" else None):
                writer.write(block)
            writer.close()
            size = spool.seek(0, os.SEEK_END)
            spool.seek(0)
            hashlib.file_digest(spool, "sha256")
    else:
        joining = parts.Joining(made, read)
        audio = Audio(samples=np.concatenate(list(joining)), sample_rate=RATE)
        size = len(encode(audio, fmt, RATE, None).data)
    seconds = time.perf_counter() - start
    return {"grown_mb": peak_mb() - base, "encoded_mb": size / 2**20, "s": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hours", type=float, nargs="+", default=[1.0, 4.0])
    parser.add_argument("--format", default="wav", choices=[f.value for f in AudioFormat])
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    fmt = AudioFormat(args.format)
    if args.child:
        print(json.dumps(measure(args.hours[0], fmt, args.child)))
        return
    for hours in args.hours:
        _, size = book(hours)
        row = {}
        for mode in MODES:
            command = [sys.executable, "-m", "bench.join_memory", "--hours", str(hours),
                       "--format", fmt.value, "--child", mode]  # fmt: skip
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            row[mode] = json.loads(out)
        samples_mb = size["samples"] * 4 / 2**20
        print(
            f"{hours:g} h of audio ({size['parts']} parts, {samples_mb:.0f} MB of float32 "
            f"samples) as {fmt.value} ({row['stream']['encoded_mb']:.0f} MB): streamed join "
            f"+{row['stream']['grown_mb']:.0f} MB at the peak ({row['stream']['s']:.1f} s), "
            f"streamed and leveled to -16 LUFS +{row['leveled']['grown_mb']:.0f} MB "
            f"({row['leveled']['s']:.1f} s), whole in memory +{row['memory']['grown_mb']:.0f} MB "
            f"({row['memory']['s']:.1f} s)"
        )


if __name__ == "__main__":
    main()
