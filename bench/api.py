"""What the API costs, side by side in one run, against bare FastAPI doing the same I/O.

- `POST /v1/jobs` on the ttsfleet API (auth, validation, rate limit, one admission script
  in Redis with AOF `appendfsync always`) against a bare FastAPI app with the same route
  and body model and nothing behind it, and the same bare app writing the body to that
  Redis (the floor of any service that records a job);
- `GET /v1/jobs/{id}` on the ttsfleet API against the bare app reading that job's hash
  (one HGETALL: the floor of any status poll);
- `POST /v1/jobs/batch` with 100 jobs a request, as jobs/s;
- the ttsfleet API on a Redis with `appendfsync everysec` (what a durable 202 costs).

    python -m bench.api [--seconds 8] [--rounds 3] [--connections 64] [--profile]

Load comes from wrk (apt-get install wrk), 2 threads, on the same 2-core box as the
server, so the absolute figures are this machine's; the ratios are the point. Each server
runs alone; the rounds interleave them (the order rotates each round) and each figure is
the median of the rounds, so a neighbour's burst on a shared box moves one round, not the
result. The rate limits are on (at a rate no client reaches), so a bucket is taken on every
submit and every poll as in production. `--profile` records the ttsfleet API under the POST and GET loads
of the last round with py-spy (pip install py-spy) and prints where its time went.
Writes bench/out/api.json (and bench/out/profile-*.txt with --profile).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.run import OUT, machine
from fleet.embedded import free_port, start_redis, wait_for
from tasks import keys
from tasks.settings import BUNDLED_VOICE

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-key-0123456789abcdef"  # 16+ characters: the API refuses shorter keys
BODY = {"text": "Your table for two is ready at the front desk.", "voice": BUNDLED_VOICE}
BATCH = 100


def wrk_script(path: Path, method: str, body: Any | None) -> Path:
    lines = [f'wrk.method = "{method}"', f'wrk.headers["Authorization"] = "Bearer {KEY}"']
    if body is not None:
        lines += [
            f"wrk.body = '{json.dumps(body)}'",
            'wrk.headers["Content-Type"] = "application/json"',
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(url: str, script: Path, seconds: int, connections: int, pid: int) -> dict[str, float]:
    """wrk's rate and latency, and the server's CPU time per request: on a shared box
    the steadier figure of the two, since it does not count the time others hold the CPU."""
    args = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s", "--latency"]
    args += ["-s", str(script)]
    cpu = cpu_seconds(pid)
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(pid) - cpu
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rate is None:
        raise SystemExit(f"cannot read wrk's output:\n{out}")
    result = {"req_per_s": float(rate.group(1))}
    # Counted and shown, never dropped: a refused request is not a served one.
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        result["non_2xx"] = float(match.group(1))
        print(f"{url}: {match.group(1)} answers were not 2xx/3xx", file=sys.stderr)
    for q in ("50", "99"):
        if found := re.search(rf"\s{q}(?:\.000)?%\s+([\d.]+)(us|ms|s)", out):
            value, unit = float(found.group(1)), found.group(2)
            result[f"p{q}_ms"] = value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    if done := re.search(r"(\d+) requests in", out):
        result["cpu_us_per_req"] = cpu * 1e6 / max(1, int(done.group(1)))
    return result


@dataclass(frozen=True)
class Load:
    """One wrk run against a server: the figure's name, the path and the request."""

    name: str
    path: str  # "{job}" is the id of a job the ttsfleet API created
    script: Path


@dataclass(frozen=True)
class Server:
    name: str
    command: list[str]
    env: dict[str, str]
    loads: list[Load]
    cwd: Path = ROOT


@contextmanager
def serving(server: Server, port: int, log: Path) -> Iterator[tuple[str, int]]:
    """The server's process until the block ends; yields its base URL and pid once it
    answers a submit."""
    base = f"http://127.0.0.1:{port}"
    args = [a.replace("{port}", str(port)) for a in server.command]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            args, cwd=server.cwd, env=server.env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{args} did not start; see {log}")
            try:
                headers = {"Authorization": f"Bearer {KEY}"}
                if httpx.post(base + "/v1/jobs", json=BODY, headers=headers).status_code == 202:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        yield base, proc.pid
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextmanager
def profiling(pid: int, out: Path) -> Iterator[None]:
    """py-spy records `pid` (collapsed stacks, idle frames left out) while the block runs."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    args = [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "200"]
    proc = subprocess.Popen(
        [*args, "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(1)  # attached before the load starts
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)


def summarize_profile(path: Path, top: int = 25) -> tuple[float, list[tuple[str, float]]]:
    """The event loop's idle share, and the share of its busy samples in which each function
    is on the stack (inclusive), leaving out the frames nearly every sample holds (the
    server's own) and the idle worker threads."""
    inclusive: Counter[str] = Counter()
    busy = idle = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not count.isdigit() or frames[0].startswith("Thread._bootstrap"):
            continue
        n = int(count)
        # The loop waiting in uvloop's C code shows as the Python frame that started it.
        if frames[-1].startswith(("Runner.run ", "asyncio_run ", "Server.run ")):
            idle += n
            continue
        busy += n
        for frame in {_name(f) for f in frames}:
            inclusive[frame] += n
    shares = [(name, n / max(busy, 1)) for name, n in inclusive.most_common()]
    return idle / max(idle + busy, 1), [s for s in shares if s[1] < 0.9][:top]


def _name(frame: str) -> str:
    """`function [dir/file.py]` of a py-spy frame `function (path/dir/file.py:line)`."""
    found = re.match(r"(.*) \((.*?)(?::\d+)?\)$", frame)
    if not found:
        return frame
    return f"{found.group(1)} [{'/'.join(Path(found.group(2)).parts[-2:])}]"


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    keys = {key for run in runs for key in run}
    return {key: statistics.median(run.get(key, 0.0) for run in runs) for key in sorted(keys)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--profile", action="store_true", help="py-spy the last round")
    parser.add_argument(
        "--compare",
        type=Path,
        help="another checkout (e.g. a worktree of main) whose API runs the same loads in the "
        "same rounds, as before_*: before/after in one run",
    )
    options = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk (make bench installs it)")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="ttsfleet-bench-api-") as tmp:
        home = Path(tmp)
        tenants = home / "tenants.json"
        # No quota in the way: the bench submits a few 100,000 jobs that nothing consumes.
        tenants.write_text(
            json.dumps({"tenants": [{"id": "bench", "api_keys": [KEY], "max_queued_jobs": 10**9}]})
        )
        post = wrk_script(home / "post.lua", "POST", BODY)
        get = wrk_script(home / "get.lua", "GET", None)
        batch = wrk_script(home / "batch.lua", "POST", {"jobs": [BODY] * BATCH})
        redises = {}
        for fsync in ("always", "everysec"):
            port = free_port()
            redises[fsync] = (port, start_redis(home / fsync, port, fsync=fsync))
        try:
            for fsync, (port, _) in redises.items():
                wait_for(f"redis-server ({fsync})", redis.Redis(port=port).ping, 20)
            base = {k: v for k, v in os.environ.items() if not k.startswith("TTSFLEET_")}
            bare = [sys.executable, "-m", "bench.bare_api", "--port", "{port}"]
            always_url = f"redis://127.0.0.1:{redises['always'][0]}/0"
            submit = Load("", "/v1/jobs", post)
            servers = [
                Server("bare_fastapi", bare, base, [Load("bare_fastapi", "/v1/jobs", post)]),
                Server(
                    "bare_fastapi_redis",
                    [*bare, "--redis-url", always_url],
                    base,
                    [
                        Load("bare_fastapi_redis_write", "/v1/jobs", post),
                        Load("bare_fastapi_read", "/v1/jobs/{job}", get),
                    ],
                ),
            ]
            for fsync, (port, _) in redises.items():
                env = dict(
                    base,
                    TTSFLEET_REDIS_URL=f"redis://127.0.0.1:{port}/0",
                    TTSFLEET_TENANTS_FILE=str(tenants),
                    # On, at a rate no client reaches: the bucket is taken, nothing refused.
                    TTSFLEET_RATE_LIMIT_PER_S="1000000000",
                    TTSFLEET_RATE_LIMIT_BURST="1000000000",
                    TTSFLEET_READ_RATE_LIMIT_PER_S="1000000000",
                    TTSFLEET_READ_RATE_LIMIT_BURST="1000000000",
                    TTSFLEET_HOME=str(home / f"home-{fsync}"),
                )
                command = [sys.executable, "-m", "fleet", "api", "--port", "{port}"]
                name = f"ttsfleet_fsync_{fsync}"
                name_loads = [Load(name, submit.path, post)]
                if fsync == "always":
                    name_loads += [
                        Load("ttsfleet_get", "/v1/jobs/{job}", get),
                        Load(f"ttsfleet_batch_{BATCH}", "/v1/jobs/batch", batch),
                    ]
                    loads = name_loads
                servers.append(Server(name, command, env, name_loads))
            if options.compare:
                tree = options.compare.resolve()
                env = dict(servers[2].env, PYTHONPATH=str(tree))
                before = [Load(f"before_{load.name}", load.path, load.script) for load in loads]
                servers.append(Server("before", servers[2].command, env, before, tree))
            job = seed_job(servers[2], home)
            clients = [redis.Redis(port=port) for port, _ in redises.values()]
            record = clients[0].hgetall(keys.job_key(job))
            rounds: dict[str, list[dict[str, float]]] = {
                load.name: [] for server in servers for load in server.loads
            }
            profiles: dict[str, Path] = {}
            for index in range(options.rounds):
                turn = index % len(servers)
                last = index == options.rounds - 1
                for server in servers[turn:] + servers[:turn]:
                    fresh_start(clients, keys.job_key(job), record)
                    with serving(server, free_port(), home / f"{server.name}.log") as (url, pid):
                        for load in server.loads:
                            target = url + load.path.replace("{job}", job)
                            run_wrk(target, load.script, 2, options.connections, pid)  # warm up
                            spy = options.profile and last and server.name == servers[2].name
                            spy = spy or (options.profile and last and server.name == "before")
                            if spy and "batch" not in load.name:
                                profile = OUT / f"profile-{load.name}.txt"
                                OUT.mkdir(parents=True, exist_ok=True)
                                with profiling(pid, profile):
                                    result = run_wrk(
                                        target, load.script, options.seconds,
                                        options.connections, pid,
                                    )  # fmt: skip
                                profiles[load.name] = profile
                            else:
                                result = run_wrk(
                                    target, load.script, options.seconds,
                                    options.connections, pid,
                                )  # fmt: skip
                            rounds[load.name].append(result)
        finally:
            for _, proc in redises.values():
                proc.terminate()
                proc.wait(10)
            # The servers' logs, to see what any refused request met.
            logs = OUT / "api-logs"
            shutil.rmtree(logs, ignore_errors=True)
            logs.mkdir(parents=True)
            for log in home.glob("*.log"):
                shutil.copy(log, logs / log.name)
    report = build_report(options, rounds, load_before)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "api.json").write_text(json.dumps(report, indent=2) + "\n")
    print_report(report)
    for name, profile in profiles.items():
        idle, shares = summarize_profile(profile)
        print(f"\n{name}: event loop idle {idle * 100:.0f} % of samples; of the busy ones:")
        for frame, share in shares:
            print(f"  {share * 100:5.1f} %  {frame}")


def fresh_start(clients: list[redis.Redis], job_key: str, record: dict[Any, Any]) -> None:
    """Every server starts on empty Redises (but for the polled job) with a fresh AOF: what
    the previous ones wrote (the batches write ~4,000 jobs/s) would otherwise make the next
    one pay for AOF rewrites, a fork of a growing data set on a 2-core box."""
    for client in clients:
        while client.info("persistence")["aof_rewrite_in_progress"]:
            time.sleep(0.1)
        client.flushall()
        client.bgrewriteaof()
        time.sleep(0.2)
        while client.info("persistence")["aof_rewrite_in_progress"]:
            time.sleep(0.1)
    clients[0].hset(job_key, mapping=record)


def seed_job(server: Server, home: Path) -> str:
    """A job the ttsfleet API created, for the status polls (ttsfleet's and the bare read)."""
    with serving(server, free_port(), home / "seed.log") as (url, _):
        headers = {"Authorization": f"Bearer {KEY}"}
        job_id: str = httpx.post(url + "/v1/jobs", json=BODY, headers=headers).json()["id"]
        return job_id


def build_report(
    options: argparse.Namespace,
    rounds: dict[str, list[dict[str, float]]],
    load_before: tuple[float, float, float],
) -> dict[str, Any]:
    median = {name: median_of(runs) for name, runs in rounds.items()}
    best = {name: max(runs, key=lambda r: r["req_per_s"]) for name, runs in rounds.items()}

    def rate(name: str) -> float:
        return median[name]["req_per_s"]

    always = rate("ttsfleet_fsync_always")
    compared = {}
    if "before_ttsfleet_fsync_always" in median:
        compared = {
            "before_api_vs_bare_fastapi_redis_write": round(
                rate("before_ttsfleet_fsync_always") / rate("bare_fastapi_redis_write"), 3
            ),
            "before_get_vs_bare_fastapi_read": round(
                rate("before_ttsfleet_get") / rate("bare_fastapi_read"), 3
            ),
            "before_batch_jobs_per_s": round(rate(f"before_ttsfleet_batch_{BATCH}") * BATCH),
        }
    return {
        "machine": machine(),
        "connections": options.connections,
        "seconds": options.seconds,
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "rounds": rounds,
        "median": median,
        "best": best,
        "api_vs_bare_fastapi": round(always / rate("bare_fastapi"), 3),
        "api_vs_bare_fastapi_redis_write": round(always / rate("bare_fastapi_redis_write"), 3),
        "get_vs_bare_fastapi_read": round(rate("ttsfleet_get") / rate("bare_fastapi_read"), 3),
        "fsync_always_vs_everysec": round(always / rate("ttsfleet_fsync_everysec"), 3),
        "batch_jobs_per_s": round(rate(f"ttsfleet_batch_{BATCH}") * BATCH),
        **compared,
    }


def print_report(report: dict[str, Any]) -> None:
    print(f"median of {len(next(iter(report['rounds'].values())))} rounds:")
    for name, result in report["median"].items():
        latency = ", ".join(f"{k} {v:.1f}" for k, v in result.items() if k != "req_per_s")
        print(f"{name:28s} {result['req_per_s']:8.0f} req/s  ({latency})")
    print(f"batch of {BATCH}:                 {report['batch_jobs_per_s']:8.0f} jobs/s")
    print(f"POST ÷ bare FastAPI:                    {report['api_vs_bare_fastapi']:.2f}")
    print(
        f"POST ÷ bare FastAPI + a Redis write:    {report['api_vs_bare_fastapi_redis_write']:.2f}"
    )
    print(f"GET ÷ bare FastAPI + a Redis read:      {report['get_vs_bare_fastapi_read']:.2f}")
    print(f"fsync always ÷ everysec (POST):         {report['fsync_always_vs_everysec']:.2f}")
    for key, value in report.items():
        if key.startswith("before_"):
            print(f"{key}: {value}")
    print(f"load average before / after: {report['load_average']}")


if __name__ == "__main__":
    main()
