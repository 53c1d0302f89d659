"""The GPU benchmark, prepared to run in one call on a lent CUDA machine (< 5 minutes):

    python -m bench.gpu            # full-size random VitsModel (MMS-TTS size), fp16, cuda:0

It builds the default-config VitsModel with random weights (no hub needed), loads it through
the transformers engine (`from_pretrained`, fp16), times batch 1, 8, 32 and 64 on corpus
sentences, then doubles the batch until CUDA runs out of memory (or a forward takes over
20 s) to find the largest batch that fits. Prints a table and writes bench/out/gpu.json.
`--device cpu --size tiny --dtype float32` smoke-tests the script anywhere.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.run import CORPUS, OUT, machine
from bench.vits import build_random_vits
from tasks.settings import ModelSpec, VoiceSpec
from worker.engines import Engine, SynthesisRequest, build_engine


def timed(engine: Engine, texts: list[str], repeats: int) -> dict[str, float]:
    import torch

    batch = [SynthesisRequest(t, "") for t in texts]
    engine.synthesize(batch)  # warm this shape
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    audio_s = 0.0
    for _ in range(repeats):
        audio_s += sum(a.duration_s for a in engine.synthesize(batch))
    seconds = (time.perf_counter() - started) / repeats
    return {
        "seconds_per_batch": seconds,
        "items_per_s": len(texts) / seconds,
        "audio_s_per_s": audio_s / repeats / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--dtype", default="float16")
    parser.add_argument("--size", default="full", choices=["tiny", "small", "full"])
    parser.add_argument("--max-batch", type=int, default=1024)
    args = parser.parse_args()
    import torch

    texts = [line.strip().lower() for line in CORPUS.read_text().splitlines() if line.strip()]
    report: dict[str, Any] = {
        "machine": machine(),
        "device": args.device,
        "dtype": args.dtype,
        "size": args.size,
    }
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        build_random_vits(Path(tmp) / "vits", args.size, noise_scale=0.0, noise_scale_duration=0.0)
        spec = ModelSpec(
            engine="transformers",
            options={"checkpoint": str(Path(tmp) / "vits"), "dtype": args.dtype},
            voices={"vits": VoiceSpec(language="en", sample_rate=16000)},
        )
        engine = build_engine(spec)
        engine.load(args.device)
        report["load_s"] = time.perf_counter() - started
        rows: dict[str, dict[str, float]] = {}
        for size in (1, 8, 32, 64):
            rows[str(size)] = timed(engine, (texts * (size // len(texts) + 1))[:size], repeats=3)
            print(
                f"batch {size:4d}: {rows[str(size)]['items_per_s']:8.1f} items/s "
                f"{rows[str(size)]['audio_s_per_s']:9.1f} audio-s/s",
                flush=True,
            )
        base = rows["1"]["items_per_s"]
        for row in rows.values():
            row["items_ratio"] = row["items_per_s"] / base
        report["batches"] = rows
        largest, size = 64, 128
        while size <= args.max_batch:
            try:
                result = timed(engine, (texts * (size // len(texts) + 1))[:size], repeats=1)
            except torch.cuda.OutOfMemoryError:
                break
            largest = size
            print(f"batch {size:4d} fits: {result['items_per_s']:8.1f} items/s", flush=True)
            if result["seconds_per_batch"] > 20:
                break
            size *= 2
        report["largest_batch_that_fits"] = largest
        if torch.cuda.is_available():
            report["max_memory_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "gpu.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
