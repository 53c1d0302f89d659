"""A book as one job (tasks.units): the same long text on the embedded fleet with 1 and
then 2 worker processes, side by side in one run, its time to first audio on the stream
beside the engine's time for the first piece, and its audio checked sample for sample
against the bare engine speaking its pieces one by one, joined.

    python -m bench.books [--chars 20000] [--workers 1,2]

The bundled voice runs with its noise off (`noise_scale` and `noise_scale_duration` 0), so
the same piece is the same samples wherever it is made. The issue's bars: 2 workers at
>= 1.7x the rate of 1 (the API, dispatcher, callbacks worker and Flower share the same 2
cores), first audio <= first piece + 100 ms. Exits 1 if the audio differs. Writes
bench/out/books.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
from typing import Any

import numpy as np
import soundfile

from bench.fleet import running_fleet
from bench.run import OUT, machine, piper_engine
from bench.stream import first_piece_s, long_text
from tasks.jobs import AudioFormat
from tasks.settings import BUNDLED_VOICE, Settings
from tasks.text import group_pieces, split_text
from worker.audio import encode, join
from worker.engines import SynthesisRequest

NOISE_OFF = {"noise_scale": 0, "noise_scale_duration": 0}
MODELS = json.dumps(
    {
        "piper-joe": {
            "engine": "piper",
            "options": NOISE_OFF,
            "voices": {BUNDLED_VOICE: {"language": "en_US", "sample_rate": 22050}},
        }
    }
)


def run_book(text: str, workers: int) -> tuple[dict[str, Any], bytes]:
    """One book on a fresh idle fleet with `workers` worker processes: its timings and audio."""
    with running_fleet(workers, models=MODELS) as client:
        started = time.perf_counter()
        job = client.submit(text)
        first_s = None
        for _chunk in client.stream(job["id"]):
            if first_s is None:
                first_s = time.perf_counter() - started
        whole_s = time.perf_counter() - started
        job = client.wait(job["id"])
        audio = client.download(job["id"])
    assert first_s is not None and job["status"] == "succeeded", job
    return {
        "workers": workers,
        "time_to_first_audio_s": round(first_s, 3),
        "whole_job_s": round(whole_s, 3),
        "audio_s": job["audio"]["duration_s"],
        "audio_s_per_s": round(job["audio"]["duration_s"] / whole_s, 2),
    }, audio


def bare_audio(text: str) -> bytes:
    """The bare engine, its pieces one by one, joined and encoded as the fleet encodes."""
    engine = piper_engine(NOISE_OFF)
    pieces = [engine.synthesize([SynthesisRequest(p, "")])[0] for p in split_text(text)]
    return encode(join(pieces), AudioFormat.WAV, 22050, None).data


def samples(data: bytes) -> np.ndarray:
    found, _ = soundfile.read(io.BytesIO(data), dtype="int16")
    return np.asarray(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chars", type=int, default=20000)
    parser.add_argument("--workers", default="1,2", help="worker process counts, in order")
    args = parser.parse_args()
    text = long_text(args.chars)
    pieces = split_text(text)
    before = machine()
    piece_s = first_piece_s(text, options=NOISE_OFF)
    runs = []
    audios = []
    for workers in [int(w) for w in args.workers.split(",")]:
        run, audio = run_book(text, workers)
        runs.append(run)
        audios.append(audio)
        print(json.dumps(run))
    expected = samples(bare_audio(text))
    equal = [bool(np.array_equal(samples(audio), expected)) for audio in audios]
    report: dict[str, Any] = {
        "chars": len(text),
        "pieces": len(pieces),
        "units": len(group_pieces(pieces, Settings.model_fields["unit_chars"].default)),
        "first_piece_engine_s": round(piece_s, 3),
        "runs": runs,
        "equal_to_pieces_joined": equal,
        "machine": {"before": before, "after": machine(), "load_average_after": os.getloadavg()},
    }
    if len(runs) >= 2:
        report["speedup"] = round(runs[0]["whole_job_s"] / runs[-1]["whole_job_s"], 2)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"books-{len(text)}.json").write_text(json.dumps(report, indent=2))
    for run in runs:
        print(
            f"{run['workers']} worker(s): whole book {run['whole_job_s']:.1f} s for "
            f"{run['audio_s']:.0f} s of audio; first audio {run['time_to_first_audio_s']:.3f} s "
            f"= first piece {piece_s:.3f} s + "
            f"{1000 * (run['time_to_first_audio_s'] - piece_s):.0f} ms (bar: + 100 ms)"
        )
    if "speedup" in report:
        print(f"{runs[-1]['workers']} workers / {runs[0]['workers']}: {report['speedup']}x")
    print(f"sample for sample equal to its pieces joined: {equal}")
    if not all(equal):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
