"""The GPU benchmark, prepared to run in one call on a lent CUDA machine (< 5 minutes;
`make gpu-bundle` prints the command, bench/gpu_run.sh is what it runs):

    python -m bench.gpu [--out DIR]            # engine: full-size random VITS on cuda:0
    python -m bench.gpu --fleet [--out DIR]    # the fleet on the same GPU

Engine (writes DIR/gpu.json): the default-config VitsModel (MMS-TTS size) with random
weights, built in a temporary directory and loaded through the transformers engine
(`from_pretrained`), in float16 and bfloat16. For each, batch 1, 2, 4, ... over corpus
sentences until CUDA runs out of memory (or one forward takes over `--max-forward-s`, or
the sweep has taken `--sweep-budget-s`):
audio-seconds/s and GPU memory (peak allocated, reserved) per batch size, the knee (the
smallest batch within 90 % of the best audio-s/s), and what BATCH_AUTOTUNE
(worker.batcher.find_knee) picks on the same engine.

Fleet (writes DIR/fleet.json; needs DIR/gpu.json): `ttsfleet up` with one synth worker
`--model vits --device cuda:0` (threads pool, micro-batcher capped at the knee), the corpus
submitted at once (about `--saturate-s` of the engine's work): fleet audio-s/s over the engine's audio-s/s at the knee (the GPU queue
tax, goal >= 0.9); the batch sizes the batcher formed (from the worker's log); p50/p99
submit -> succeeded of one short job at a time on the idle fleet; then a second fleet with
WORKER_MAX_GPU_MB between the reserved memory of batch 1 and of the knee, which must
recycle the worker on torch.cuda.memory_reserved while every job still succeeds.

`--device cpu --size tiny` runs both anywhere (tests/integration/test_gpu_bundle.py);
recycling on GPU memory is then reported as not applicable.
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.fleet import running_fleet
from bench.run import CORPUS, OUT, epoch, latencies, machine, quantile
from bench.vits import build_random_vits
from client.client import TERMINAL
from tasks.settings import ModelSpec
from worker.batcher import find_knee, knee_of
from worker.engines import Engine, SynthesisRequest, build_engine

MIB = 2**20
SHORT_TEXT = "hi there."


def model_options(checkpoint: Path, dtype: str) -> dict[str, Any]:
    return {
        "engine": "transformers",
        "options": {"checkpoint": str(checkpoint), "dtype": dtype},
        "voices": {"vits": {"language": "en", "sample_rate": 16000}},
    }


def load(checkpoint: Path, dtype: str, device: str) -> Engine:
    engine = build_engine(ModelSpec.model_validate(model_options(checkpoint, dtype)))
    engine.load(device)
    return engine


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


def sweep(
    engine: Engine, texts: list[str], max_batch: int, max_forward_s: float, budget_s: float
) -> dict[str, Any]:
    """Batch 1, 2, 4, ... until out of memory, too slow, `max_batch`, or `budget_s` spent."""
    deadline = time.monotonic() + budget_s
    import torch

    cuda = torch.cuda.is_available()
    rows: dict[str, dict[str, float]] = {}
    stopped = f"max batch {max_batch}"
    size = 1
    while size <= max_batch:
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        try:
            row = timed(engine, (texts * (size // len(texts) + 1))[:size], 3 if size <= 64 else 1)
        except RuntimeError as exc:  # torch.cuda.OutOfMemoryError, or cuDNN failing to allocate
            if size == 1:
                raise
            stopped = f"batch {size}: {type(exc).__name__}: {str(exc)[:200]}"
            break
        if cuda:
            row["max_allocated_mib"] = torch.cuda.max_memory_allocated() / MIB
            row["reserved_mib"] = torch.cuda.memory_reserved() / MIB
        rows[str(size)] = row
        memory = f"{row['max_allocated_mib']:9.0f} MiB peak" if cuda else ""
        print(
            f"  batch {size:5d}: {row['items_per_s']:9.1f} items/s "
            f"{row['audio_s_per_s']:10.1f} audio-s/s {memory}",
            flush=True,
        )
        if row["seconds_per_batch"] > max_forward_s:
            stopped = f"batch {size} took {row['seconds_per_batch']:.1f} s"
            break
        if time.monotonic() > deadline:
            stopped = f"time budget of {budget_s:.0f} s spent after batch {size}"
            break
        size *= 2
    if cuda:
        torch.cuda.empty_cache()
    knee = knee_of({int(s): r["audio_s_per_s"] for s, r in rows.items()})
    return {"batches": rows, "stopped": stopped, "largest_batch": max(map(int, rows)), "knee": knee}


def engine_bench(args: argparse.Namespace, texts: list[str], checkpoint: Path) -> dict[str, Any]:
    report: dict[str, Any] = {"machine": machine(), "device": args.device, "size": args.size}
    for dtype in args.dtypes.split(","):
        print(f"{dtype}:", flush=True)
        started = time.perf_counter()
        try:
            engine = load(checkpoint, dtype, args.device)
            result: dict[str, Any] = {"load_s": time.perf_counter() - started}
            budget = args.sweep_budget_s
            result.update(sweep(engine, texts, args.max_batch, args.max_forward_s, budget))
        except Exception as exc:  # one call on the GPU: the other dtype still gets measured
            print(f"  {dtype} failed: {type(exc).__name__}: {exc}", flush=True)
            report[dtype] = {"error": f"{type(exc).__name__}: {exc}"}
            write(args.out / "gpu.json", report)
            continue
        # BATCH_AUTOTUNE's choice on this engine, bounded as the setting is (<= 1024) and by
        # the largest batch that fit (its sentence may be longer than the corpus's).
        bound = min(result["largest_batch"], 1024)
        while "autotune_knee" not in result:
            try:
                result["autotune_knee"] = find_knee(engine, bound)
            except RuntimeError:
                if bound == 1:
                    raise
                bound //= 2
        result["autotune_bound"] = bound
        knee = result["batches"][str(result["knee"])]
        print(
            f"  knee: batch {result['knee']} ({knee['audio_s_per_s']:.1f} audio-s/s); "
            f"autotune picks {result['autotune_knee']}; {result['stopped']}",
            flush=True,
        )
        report[dtype] = result
        write(args.out / "gpu.json", report)  # each dtype as soon as it is measured
        del engine
        gc.collect()
    return report


def write(path: Path, report: dict[str, Any]) -> None:
    path.write_text(json.dumps(report, indent=2) + "\n")


def worker_log(home: Path) -> str:
    path = home / "worker.log"
    return path.read_text(errors="replace") if path.is_file() else ""


def saturate(client: Any, texts: list[str], jobs: int, limit_s: float) -> dict[str, Any]:
    """Submit `jobs` corpus sentences at once; fleet audio-s/s from the server's records of
    the jobs finished within `limit_s` (the GPU call has minutes in all)."""
    requests = [{"text": texts[i % len(texts)]} for i in range(jobs)]
    started = time.time()
    ids: set[str] = set()
    for offset in range(0, jobs, 1000):
        ids |= {j["id"] for j in client.submit_batch(requests[offset : offset + 1000])}
    while True:
        # Polled slowly: the times come from the server's records.
        time.sleep(0.5)
        done = [j for j in client.iter_jobs() if j["id"] in ids and j["status"] in TERMINAL]
        if len(done) == jobs or time.time() - started > limit_s:
            break
    succeeded = [j for j in done if j["status"] == "succeeded"]
    if not succeeded:
        raise RuntimeError(f"none of {jobs} jobs succeeded within {limit_s:.0f} s: {done[:1]}")
    seconds = max(epoch(j["finished_at"]) for j in succeeded) - started
    audio_s = sum(j["audio"]["duration_s"] for j in succeeded)
    failed = [j for j in done if j["status"] != "succeeded"]
    return {
        "jobs": jobs,
        "succeeded": len(succeeded),
        "failed": len(failed),
        "first_failure": failed[0].get("error") if failed else None,
        "seconds": seconds,
        "jobs_per_s": len(succeeded) / seconds,
        "audio_s_per_s": audio_s / seconds,
    }


def batch_sizes(log: str) -> dict[str, int]:
    """How many batches of each size the batcher formed (worker.startup logs each)."""
    sizes = Counter(int(n) for n in re.findall(r"batch of (\d+) items in", log))
    return {str(size): count for size, count in sorted(sizes.items())}


def formed_since(home: Path, before: dict[str, int], items: int) -> dict[str, int]:
    """Batches formed since `before`; waits (briefly) for the log of the last ones."""
    deadline = time.monotonic() + 5
    while True:
        formed = Counter(batch_sizes(worker_log(home)))
        formed.subtract(before)
        if sum(int(s) * n for s, n in formed.items()) >= items or time.monotonic() > deadline:
            return {s: n for s, n in formed.items() if n > 0}
        time.sleep(0.2)


@contextmanager
def logs_on_failure(home: Path) -> Iterator[None]:
    """The GPU machine keeps nothing: if a fleet phase fails, print its logs' tails."""
    try:
        yield
    except BaseException:
        for log in sorted(home.glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()[-40:]
            print(f"--- {log.name} (last {len(lines)} lines)", *lines, sep="\n", flush=True)
        raise


def recycling(args: argparse.Namespace, models: str, engine: dict[str, Any], home: Path) -> Any:
    """A fleet whose worker must recycle on reserved CUDA memory; jobs must all succeed."""
    import torch

    if not (args.device.startswith("cuda") and torch.cuda.is_available()):
        return {"applicable": False, "why": "no CUDA: torch.cuda.memory_reserved() is 0 here"}
    knee = engine["knee"]
    first = engine["batches"]["1"]["reserved_mib"]
    at_knee = engine["batches"][str(knee)]["reserved_mib"]
    limit = max(1, int((first + at_knee) / 2))
    with logs_on_failure(home), running_fleet(
        None, args.device, "vits", home, models=models, result_cache="false",
        batch_max_size=str(min(knee, 1024)), worker_max_gpu_mb=str(limit),
    ) as client:  # fmt: skip
        result = saturate(client, texts_of(args), max(2 * knee, 16), 3 * args.saturate_s)
    reasons = re.findall(r"recycling worker process \d+: (GPU memory reserved.*)", worker_log(home))
    return {
        "applicable": True,
        "limit_mb": limit,
        "reserved_mib_batch_1": first,
        "reserved_mib_knee": at_knee,
        "recycles": len(reasons),
        "reasons": reasons[:5],
        "jobs": result["jobs"],
        "succeeded": result["succeeded"],
        "failed": result["failed"],
        "works": len(reasons) > 0 and result["failed"] == 0,
    }


def texts_of(args: argparse.Namespace) -> list[str]:
    lines = Path(args.corpus).read_text().splitlines()
    return [line.strip().lower() for line in lines if line.strip()]


def fleet_bench(args: argparse.Namespace, texts: list[str], checkpoint: Path) -> dict[str, Any]:
    engine_report = json.loads((args.out / "gpu.json").read_text())
    usable = [d for d in args.dtypes.split(",") if "batches" in engine_report.get(d, {})]
    if not usable:
        raise SystemExit(f"gpu.json has no measured dtype of {args.dtypes}: run bench.gpu first")
    dtype = usable[0]
    engine = engine_report[dtype]
    knee = min(engine["knee"], 1024)
    at_knee = engine["batches"][str(engine["knee"])]
    models = json.dumps({"vits": model_options(checkpoint, dtype)})
    # About `--saturate-s` of work at the engine's pace, at least four batches.
    jobs = args.jobs or max(4 * knee, min(5000, int(at_knee["items_per_s"] * args.saturate_s)))
    report: dict[str, Any] = {"device": args.device, "dtype": dtype, "batch_max_size": knee}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "fleet"
        started = time.perf_counter()
        with logs_on_failure(home), running_fleet(
            None, args.device, "vits", home, models=models, result_cache="false",
            batch_max_size=str(knee), dispatch_queue_depth=str(max(32, 4 * knee)),
        ) as client:  # fmt: skip
            report["start_s"] = time.perf_counter() - started
            # Idle first: after the saturation run, jobs past its time limit may still run.
            idle = [s for _, s in latencies(client, [SHORT_TEXT] * args.idle_jobs, rate=None)]
            report["idle_latency_s"] = {
                "jobs": len(idle),
                "p50": quantile(idle, 0.5),
                "p99": quantile(idle, 0.99),
                "mean": statistics.fmean(idle),
            }
            before = batch_sizes(worker_log(home))
            report["saturation"] = saturate(client, texts, jobs, 3 * args.saturate_s)
            report["batches_formed"] = formed_since(home, before, report["saturation"]["succeeded"])
            report["queue_tax"] = report["saturation"]["audio_s_per_s"] / at_knee["audio_s_per_s"]
        try:
            report["gpu_recycling"] = recycling(args, models, engine, Path(tmp) / "recycle")
        except Exception as exc:  # what the first fleet measured still gets written
            report["gpu_recycling"] = {"error": f"{type(exc).__name__}: {exc}"}
    sat = report["saturation"]
    print(
        f"fleet: {sat['succeeded']} of {sat['jobs']} jobs in {sat['seconds']:.1f} s "
        f"({sat['failed']} failed), {sat['audio_s_per_s']:.1f} audio-s/s"
        f" / engine at the knee (batch {engine['knee']}) {at_knee['audio_s_per_s']:.1f}"
        f" = GPU queue tax {report['queue_tax']:.3f} (goal >= 0.9)"
    )
    print(f"batches formed (size: count): {report['batches_formed']}")
    idle_s = report["idle_latency_s"]
    print(
        f"one short job on the idle fleet: p50 {idle_s['p50'] * 1000:.0f} ms, "
        f"p99 {idle_s['p99'] * 1000:.0f} ms"
    )
    print(f"WORKER_MAX_GPU_MB recycling: {json.dumps(report['gpu_recycling'])}")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fleet", action="store_true", help="the fleet run (needs gpu.json)")
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--dtypes", default="float16,bfloat16", help="the fleet uses the first")
    parser.add_argument("--size", default="full", choices=["tiny", "small", "full"])
    parser.add_argument("--max-batch", type=int, default=4096)
    parser.add_argument("--max-forward-s", type=float, default=4.0)
    parser.add_argument("--sweep-budget-s", type=float, default=40.0, help="per dtype")
    parser.add_argument("--saturate-s", type=float, default=15.0, help="fleet: seconds of work")
    parser.add_argument("--jobs", type=int, default=0, help="fleet: jobs to submit (0: auto)")
    parser.add_argument("--idle-jobs", type=int, default=30)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    texts = texts_of(args)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "vits"
        build_random_vits(checkpoint, args.size, noise_scale=0.0, noise_scale_duration=0.0)
        if args.fleet:
            report = fleet_bench(args, texts, checkpoint)
            name = "fleet.json"
        else:
            report = engine_bench(args, texts, checkpoint)
            name = "gpu.json"
    write(args.out / name, report)
    print(f"wrote {args.out / name}")


if __name__ == "__main__":
    main()
