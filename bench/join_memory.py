"""What joining a book costs in memory: one hour of audio at 22.05 kHz in parts (as units
leave them, tasks.units), joined by `worker.parts.join` and encoded as the job's format by
`worker.audio.encode`, with the process's peak RSS after each step.

    python -m bench.join_memory [--hours 1] [--format wav]

The parts are random samples held in memory by this process (a stand-in for storage reads,
which return each part's bytes in turn); the figures are the growth over that baseline.
"""

from __future__ import annotations

import argparse
import resource

import numpy as np

from tasks.jobs import AudioFormat
from tasks.units import Part
from worker import parts
from worker.audio import encode

RATE = 22050


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--format", default="wav", choices=[f.value for f in AudioFormat])
    args = parser.parse_args()
    count, per_part = 60, 4
    length = int(RATE * 3600 * args.hours) // (count * per_part)
    rng = np.random.default_rng(0)
    stored: dict[str, bytes] = {}
    made = []
    for i in range(count):
        stored[f"part{i}"] = (rng.standard_normal(length * per_part) * 0.1).astype("<f4").tobytes()
        made.append(
            Part(key=f"part{i}", sample_rate=RATE, texts=["x"] * per_part,
                 lengths=[length] * per_part, words=[None] * per_part)
        )  # fmt: skip
    samples_mb = sum(map(len, stored.values())) / 2**20
    base = peak_mb()
    spoken = parts.join(made, lambda part: stored[part.key])
    joined = peak_mb()
    encoded = encode(spoken.audio, AudioFormat(args.format), RATE, None)
    done = peak_mb()
    print(
        f"{args.hours:g} h of audio ({samples_mb:.0f} MB of float32 samples): joining "
        f"+{joined - base:.0f} MB, joining and encoding as {args.format} +{done - base:.0f} MB "
        f"at the peak ({len(encoded.data) / 2**20:.0f} MB encoded)"
    )


if __name__ == "__main__":
    main()
