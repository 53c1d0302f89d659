"""RSS under a leaking engine over many jobs, with recycling by current RSS: the plot.

    python -m bench.recycle [--jobs 2000] [--leak-mb 2]

Runs the embedded fleet with `tests.engines:LeakingEngine` (keeps `--leak-mb` per job
forever), `TTSFLEET_WORKER_MAX_RSS_MB` set a few jobs' worth above a fresh child, one
prefork child; samples the worker children's RSS while the jobs run; checks every job
succeeded once; writes bench/out/recycle.json and bench/out/recycle.png.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

from bench.fleet import running_fleet
from bench.run import OUT, wait_all

ROOT = Path(__file__).resolve().parents[1]


def worker_children() -> dict[int, float]:
    """RSS (MB) of every prefork child of a `fleet worker` process this bench started."""
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    rss: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            commands[int(entry.name)] = (entry / "cmdline").read_bytes().decode(errors="replace")
            status = (entry / "status").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss[int(entry.name)] = int(line.split()[1]) / 1024
    ours = {os.getpid()}
    grew = True
    while grew:  # the fleet is a tree under this process: `up` → worker → children
        before = len(ours)
        ours |= {pid for pid, ppid in parents.items() if ppid in ours}
        grew = len(ours) > before
    workers = {pid for pid in ours if "fleet\x00worker" in commands.get(pid, "")}
    return {pid: rss.get(pid, 0.0) for pid, ppid in parents.items() if ppid in workers}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--leak-mb", type=float, default=2.0)
    parser.add_argument(
        "--headroom-jobs", type=int, default=16, help="limit = fresh child + this many leaks"
    )
    args = parser.parse_args()
    models = {
        "leak": {
            "engine": "tests.engines:LeakingEngine",
            "options": {"mb": args.leak_mb},
            "voices": {"tone": {"language": "en", "sample_rate": 16000}},
        }
    }
    # A fresh child's RSS includes the pages it shares with its parent: measure it first.
    with running_fleet(concurrency=1, models=json.dumps(models), result_cache="false"):
        fresh_mb = max(worker_children().values())
    limit = int(fresh_mb + args.headroom_jobs * args.leak_mb)
    samples: list[tuple[float, float, int]] = []
    stop = threading.Event()
    pids: set[int] = set()

    def sample(started: float) -> None:
        while not stop.wait(0.1):
            # A reaped or exiting child has no VmRSS: only live children are sampled.
            children = {pid: mb for pid, mb in worker_children().items() if mb > 0}
            pids.update(children)
            if children:
                samples.append((time.monotonic() - started, max(children.values()), len(pids)))

    with running_fleet(
        concurrency=1, models=json.dumps(models), worker_max_rss_mb=str(limit), result_cache="false"
    ) as client:
        started = time.monotonic()
        thread = threading.Thread(target=sample, args=(started,), daemon=True)
        thread.start()
        ids: list[str] = []
        for offset in range(0, args.jobs, 1000):
            batch = [
                {"text": f"leaky job {i}."} for i in range(offset, min(args.jobs, offset + 1000))
            ]
            ids += [j["id"] for j in client.submit_batch(batch)]
        jobs = wait_all(client, ids, timeout=1800)
        stop.set()
        thread.join()
    assert all(j["status"] == "succeeded" for j in jobs), "a job did not succeed"
    attempts = sum(j["attempts"] for j in jobs)
    peak = max(s[1] for s in samples)
    report = {
        "jobs": args.jobs,
        "leak_mb_per_job": args.leak_mb,
        "limit_mb": limit,
        "child_rss_first_mb": samples[0][1],
        "child_rss_peak_mb": peak,
        "child_rss_last_mb": samples[-1][1],
        "children_seen": len(pids),
        "deliveries": attempts,
        "lost": 0,
        "seconds": samples[-1][0],
        "unbounded_estimate_mb": samples[0][1] + args.jobs * args.leak_mb,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "recycle.json").write_text(json.dumps(report, indent=2) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.6))
    ax.plot([s[0] for s in samples], [s[1] for s in samples], lw=0.8, label="worker child RSS")
    ax.axhline(limit, color="red", lw=0.8, ls="--", label=f"WORKER_MAX_RSS_MB = {limit}")
    ax.set(
        xlabel="seconds",
        ylabel="MB",
        title=(
            f"{args.jobs} jobs, engine leaking {args.leak_mb:g} MB each: {len(pids)} children, "
            f"peak {peak:.0f} MB (unbounded: ~{report['unbounded_estimate_mb']:.0f} MB)"
        ),
    )
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(OUT / "recycle.png", dpi=110)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
