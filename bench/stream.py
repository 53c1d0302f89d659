"""Time to first audio on `GET /v1/jobs/{id}/audio/stream` for a long job on an idle fleet,
beside the job's whole time and the engine's time for its first piece alone.

The issue's bar: first audio ≤ first piece + 100 ms. Usage: python -m bench.stream
[--chars 20000]. Starts its own embedded fleet (one worker, the bundled voice) with
`MAX_TEXT_CHARS` raised to the text's length, so the job runs as one unit on one worker.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from bench.fleet import running_fleet
from bench.run import piper_engine
from tasks.text import split_text
from worker.engines import SynthesisRequest

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "bench" / "sentences.txt"


def long_text(chars: int) -> str:
    lines = [line.strip() for line in CORPUS.read_text().splitlines() if line.strip()]
    words: list[str] = []
    while len(" ".join(words)) < chars:
        words += lines
    return " ".join(words)[:chars].rsplit(" ", 1)[0] + "."


def first_piece_s(text: str, repeats: int = 7, options: dict[str, Any] | None = None) -> float:
    """The engine alone on the job's first piece: the median of a few warm runs (a typical
    call, as the worker makes it; the best of them flatters the bare engine)."""
    engine = piper_engine(options)
    request = [SynthesisRequest(split_text(text)[0], "")]
    engine.synthesize(request)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        engine.synthesize(request)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chars", type=int, default=20000)
    args = parser.parse_args()
    text = long_text(args.chars)
    piece_s = first_piece_s(text)
    with running_fleet(1, max_text_chars=str(len(text))) as client:
        started = time.perf_counter()
        job = client.submit(text)
        first_s = None
        received = 0
        for chunk in client.stream(job["id"]):
            if first_s is None:
                first_s = time.perf_counter() - started
            received += len(chunk)
        streamed_s = time.perf_counter() - started
        job = client.wait(job["id"])
    assert first_s is not None and job["status"] == "succeeded", job
    report = {
        "chars": len(text),
        "pieces": len(split_text(text)),
        "audio_s": job["audio"]["duration_s"],
        "first_piece_engine_s": round(piece_s, 3),
        "time_to_first_audio_s": round(first_s, 3),
        "first_audio_overhead_ms": round(1000 * (first_s - piece_s), 1),
        "whole_job_s": round(streamed_s, 3),
        "streamed_bytes": received,
    }
    print(json.dumps(report, indent=2))
    print(
        f"time to first audio {first_s:.3f} s = first piece {piece_s:.3f} s "
        f"+ {1000 * (first_s - piece_s):.0f} ms (bar: + 100 ms); whole job {streamed_s:.1f} s "
        f"for {job['audio']['duration_s']:.0f} s of audio"
    )


if __name__ == "__main__":
    main()
