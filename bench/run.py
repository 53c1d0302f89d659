"""`make bench`: batching gain, queue tax and latency, measured side by side in one run.

- batching gain: each engine synthesizes the same corpus sentences at batch 1, 4, 8, 16;
  jobs/s and audio-seconds/s as ratios to batch 1.
- queue tax: the whole fleet (API → Redis → dispatcher → worker → storage, one worker
  process) at saturation over the corpus, divided by the bare engine looping over the same
  sentences in one process with the same single thread. Goal ≥ 0.90.
- latency: submit → succeeded p50/p99 one job at a time and at 80 % of the measured
  capacity (Poisson arrivals), the idle overhead (end to end minus the bare engine's time
  for the same sentence), and the result-cache hit path.

Writes bench/out/bench.json and bench/out/bench.png. Corpus: ../shared/bench/sentences.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.fleet import running_fleet
from bench.vits import build_random_vits
from tasks.settings import ModelSpec, VoiceSpec, _default_models
from worker.engines import Engine, SynthesisRequest, build_engine

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "bench" / "sentences.txt"
OUT = ROOT / "bench" / "out"
BATCH_SIZES = (1, 4, 8, 16)


def corpus() -> list[str]:
    return [line.strip() for line in CORPUS.read_text().splitlines() if line.strip()]


def epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def machine() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    import onnxruntime
    import torch

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": datetime.now().isoformat(timespec="seconds"),
    }


def piper_engine(options: dict[str, Any] | None = None) -> Engine:
    """The bundled voice on the CPU, with engine `options` (e.g. its noise off)."""
    spec = _default_models()["piper-joe"]
    engine = build_engine(spec.model_copy(update={"options": options or {}}))
    engine.load("cpu")
    return engine


def vits_engine(directory: Path) -> Engine:
    build_random_vits(directory, "small", noise_scale=0.0, noise_scale_duration=0.0)
    spec = ModelSpec(
        engine="transformers",
        options={"checkpoint": str(directory)},
        voices={"vits": VoiceSpec(language="en", sample_rate=16000)},
    )
    engine = build_engine(spec)
    engine.load("cpu")
    return engine


def batching_gain(engine: Engine, texts: list[str]) -> dict[str, dict[str, float]]:
    """Items/s and audio-s/s per batch size over the same texts; ratios to batch 1."""
    rows: dict[str, dict[str, float]] = {}
    for size in BATCH_SIZES:
        batches = [texts[i : i + size] for i in range(0, len(texts), size)]
        engine.synthesize([SynthesisRequest(t, "") for t in batches[0]])  # warm this shape
        started = time.perf_counter()
        audio_s = 0.0
        for batch in batches:
            audio_s += sum(
                a.duration_s for a in engine.synthesize([SynthesisRequest(t, "") for t in batch])
            )
        seconds = time.perf_counter() - started
        rows[str(size)] = {"jobs_per_s": len(texts) / seconds, "audio_s_per_s": audio_s / seconds}
    base = rows["1"]
    for row in rows.values():
        row["jobs_ratio"] = row["jobs_per_s"] / base["jobs_per_s"]
        row["audio_ratio"] = row["audio_s_per_s"] / base["audio_s_per_s"]
    return rows


def bare_loop(engine: Engine, texts: list[str]) -> tuple[float, dict[str, float]]:
    """Seconds for the whole corpus one sentence at a time, and each sentence's time."""
    each: dict[str, float] = {}
    started = time.perf_counter()
    for text in texts:
        t0 = time.perf_counter()
        engine.synthesize([SynthesisRequest(text, "")])
        each[text] = time.perf_counter() - t0
    return time.perf_counter() - started, each


def wait_all(client: Any, ids: list[str], timeout: float = 600) -> list[dict[str, Any]]:
    """Every job, once all are terminal. Polls the list endpoint four times a second: the
    times come from the server's records, so polling slowly costs no accuracy, and polling
    each job quickly would steal the CPU the fleet is being measured on."""
    wanted = set(ids)
    deadline = time.monotonic() + timeout
    while True:
        found = {j["id"]: j for j in client.iter_jobs() if j["id"] in wanted}
        if len(found) == len(wanted) and all(
            j["status"] in ("succeeded", "failed", "canceled") for j in found.values()
        ):
            return [found[i] for i in ids]
        if time.monotonic() > deadline:
            raise TimeoutError("jobs unfinished")
        time.sleep(0.25)


def fleet_throughput(client: Any, texts: list[str]) -> float:
    """Jobs per second through the whole fleet, all jobs submitted at once."""
    started = time.time()
    jobs = client.submit_batch([{"text": t, "metadata": {"bench": "tax"}} for t in texts])
    finished = wait_all(client, [j["id"] for j in jobs])
    assert all(j["status"] == "succeeded" for j in finished)
    return len(texts) / (max(epoch(j["finished_at"]) for j in finished) - started)


def latencies(client: Any, texts: list[str], rate: float | None) -> list[tuple[str, float]]:
    """(text, submit → succeeded seconds) per job; one at a time, or Poisson at `rate`/s."""
    results: list[tuple[str, float]] = []
    lock = threading.Lock()

    def one(text: str) -> None:
        started = time.time()
        job = client.submit(text)
        job = client.wait(job["id"], poll_s=0.01)
        with lock:
            results.append((text, epoch(job["finished_at"]) - started))

    if rate is None:
        for text in texts:
            one(text)
        return results
    rng = random.Random(7)
    threads = []
    for text in texts:
        thread = threading.Thread(target=one, args=(text,))
        thread.start()
        threads.append(thread)
        time.sleep(rng.expovariate(rate))
    for thread in threads:
        thread.join()
    return results


def cache_hit_path(client: Any, text: str, repeats: int = 10) -> dict[str, float]:
    """Worker time (started → finished) of a first request and of identical repeats."""

    def work(job: dict[str, Any]) -> float:
        return epoch(job["finished_at"]) - epoch(job["started_at"])

    miss = work(client.wait(client.submit(text)["id"], poll_s=0.01))
    hits = [work(client.wait(client.submit(text)["id"], poll_s=0.01)) for _ in range(repeats)]
    return {"miss_s": miss, "hit_s_p50": statistics.median(hits)}


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    width = 0.38
    for i, (engine, rows) in enumerate(report["batching_gain"].items()):
        xs = [j + i * width for j in range(len(rows))]
        ax.bar(xs, [r["audio_ratio"] for r in rows.values()], width, label=engine)
    ax.set_xticks([j + width / 2 for j in range(len(BATCH_SIZES))], [str(b) for b in BATCH_SIZES])
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set(title="Batching gain on this CPU (audio-s/s vs batch 1)", xlabel="batch size")
    ax.legend()
    ax = axes[1]
    ax.bar(
        ["bare engine", "fleet"],
        [report["bare_jobs_per_s"], report["fleet_jobs_per_s"]],
        color=["#999", "#2a7"],
    )
    ax.set(title=f"Queue tax: fleet / bare = {report['queue_tax']:.2f}", ylabel="jobs/s")
    ax = axes[2]
    light, loaded = report["latency_s"]["light"], report["latency_s"]["load80"]
    ax.bar([0, 1], [light["p50"], light["p99"]], 0.4, label="one at a time")
    ax.bar([0.4, 1.4], [loaded["p50"], loaded["p99"]], 0.4, label="80 % of capacity")
    ax.set_xticks([0.2, 1.2], ["p50", "p99"])
    ax.set(title="Submit → succeeded", ylabel="seconds")
    ax.legend()
    fig.suptitle(
        f"ttsfleet bench — {report['machine']['cpu']}, {report['machine']['cores']} cores",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer sentences (a smoke run)")
    args = parser.parse_args()
    texts = corpus()
    gain_texts = texts[:8] if args.quick else texts[:16]
    OUT.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"machine": machine(), "corpus": str(CORPUS), "batching_gain": {}}

    print("batching gain (same sentences, each batch size; ratios to batch 1) ...", flush=True)
    piper = piper_engine()
    report["batching_gain"]["piper"] = batching_gain(piper, gain_texts)
    with tempfile.TemporaryDirectory() as tmp:
        vits = vits_engine(Path(tmp) / "vits-small")
        report["batching_gain"]["transformers"] = batching_gain(
            vits, [t.lower() for t in gain_texts]
        )
        del vits

    print("queue tax: bare engine loop ...", flush=True)
    tax_texts = texts[:16] if args.quick else texts
    bare_s, _ = bare_loop(piper, tax_texts)
    report["bare_jobs_per_s"] = len(tax_texts) / bare_s
    del piper

    print("queue tax and latency: the fleet (one worker process, one thread) ...", flush=True)
    # The result cache stays off here: repeated corpus sentences would be served from it.
    with running_fleet(concurrency=1, result_cache="false") as client:
        report["fleet_jobs_per_s"] = fleet_throughput(client, tax_texts)
        report["queue_tax"] = report["fleet_jobs_per_s"] / report["bare_jobs_per_s"]
        light_texts = sorted(texts, key=len)[: (8 if args.quick else 20)]
        light = latencies(client, light_texts, rate=None)
        rate = 0.8 * report["fleet_jobs_per_s"]
        load_texts = [random.Random(3).choice(texts) for _ in range(20 if args.quick else 60)]
        loaded = latencies(client, load_texts, rate=rate)
        _, light_engine = bare_loop(piper_engine(), light_texts)
        overhead = [e2e - light_engine[text] for text, e2e in light]
        report["latency_s"] = {
            "p50": quantile([s for _, s in light], 0.5),
            "p99": quantile([s for _, s in light], 0.99),
            "light": {
                "p50": quantile([s for _, s in light], 0.5),
                "p99": quantile([s for _, s in light], 0.99),
            },
            "load80": {
                "rate_per_s": rate,
                "p50": quantile([s for _, s in loaded], 0.5),
                "p99": quantile([s for _, s in loaded], 0.99),
            },
            "idle_overhead_p50": statistics.median(overhead),
        }
    print("result cache hit path ...", flush=True)
    with running_fleet(concurrency=1) as client:
        report["cache"] = cache_hit_path(client, "Your cache hit is ready in a moment.")

    (OUT / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, OUT / "bench.png")

    print(
        f"\nmachine: {report['machine']['cpu']} ({report['machine']['cores']} cores), no GPU"
        if not report["machine"]["gpu"]
        else ""
    )
    print("\nbatching gain (audio-seconds/s, ratio to batch 1 in this run)")
    print(f"  {'engine':<13}" + "".join(f"{'batch ' + str(b):>12}" for b in BATCH_SIZES))
    for engine, rows in report["batching_gain"].items():
        cells = "".join(
            f"{r['audio_s_per_s']:7.1f} {r['audio_ratio']:4.2f}x" for r in rows.values()
        )
        print(f"  {engine:<13}{cells}")
    print(
        f"\nqueue tax: fleet {report['fleet_jobs_per_s']:.2f} jobs/s / bare engine "
        f"{report['bare_jobs_per_s']:.2f} jobs/s = {report['queue_tax']:.3f}  (goal >= 0.90)"
    )
    lat = report["latency_s"]
    print(
        f"\nlatency submit -> succeeded: one at a time p50 {lat['light']['p50'] * 1000:.0f} ms, "
        f"p99 {lat['light']['p99'] * 1000:.0f} ms; at 80 % of capacity ({lat['load80']['rate_per_s']:.1f} jobs/s) "
        f"p50 {lat['load80']['p50'] * 1000:.0f} ms, p99 {lat['load80']['p99'] * 1000:.0f} ms"
    )
    print(
        f"idle overhead (end to end minus bare engine time) p50 {lat['idle_overhead_p50'] * 1000:.0f} ms"
    )
    cache = report["cache"]
    print(
        f"result cache: worker time miss {cache['miss_s'] * 1000:.0f} ms, hit p50 {cache['hit_s_p50'] * 1000:.0f} ms"
    )
    print(f"\nwrote {OUT / 'bench.json'} and {OUT / 'bench.png'}")


if __name__ == "__main__":
    main()
