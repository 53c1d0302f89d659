"""What the submit API costs, side by side in one run: `POST /v1/jobs` on the ttsfleet API
(auth, validation, one admission script in Redis with AOF `appendfsync always`) against a
bare FastAPI app with the same route and body model and nothing behind it, the same bare
app writing the body to that Redis, and the ttsfleet API on a Redis with `appendfsync
everysec` (what a durable 202 costs).

    python -m bench.api [--seconds 10] [--rounds 2] [--connections 64]

Load comes from wrk (apt-get install wrk), 2 threads, on the same 2-core box as the server,
so the absolute figures are this machine's; the ratios are the point. The servers run one at
a time, rounds interleaved, best round kept. Writes bench/out/api.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.run import OUT, machine
from fleet.embedded import free_port, start_redis, wait_for
from tasks.settings import BUNDLED_VOICE

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-key-0123456789abcdef"  # 16+ characters: the API refuses shorter keys
BODY = {"text": "Your table for two is ready at the front desk.", "voice": BUNDLED_VOICE}


def wrk_script(directory: Path) -> Path:
    script = directory / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = '{json.dumps(BODY)}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {KEY}"\n'
    )
    return script


def run_wrk(url: str, script: Path, seconds: int, connections: int) -> dict[str, float]:
    args = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script)]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        raise SystemExit(f"{url}: {match.group(1)} requests were refused:\n{out}")
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rate is None:
        raise SystemExit(f"cannot read wrk's output:\n{out}")
    result = {"req_per_s": float(rate.group(1))}
    for q in ("50", "99"):
        if found := re.search(rf"\s{q}(?:\.000)?%\s+([\d.]+)(us|ms|s)", out):
            value, unit = float(found.group(1)), found.group(2)
            result[f"p{q}_ms"] = value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    return result


@contextmanager
def serving(args: list[str], env: dict[str, str], port: int, log: Path) -> Iterator[str]:
    """A server process until the block ends; yields its URL once it answers the request."""
    url = f"http://127.0.0.1:{port}/v1/jobs"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{args} did not start; see {log}")
            try:
                headers = {"Authorization": f"Bearer {KEY}"}
                if httpx.post(url, json=BODY, headers=headers).status_code == 202:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    options = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk (make bench installs it)")
    with tempfile.TemporaryDirectory(prefix="ttsfleet-bench-api-") as tmp:
        home = Path(tmp)
        tenants = home / "tenants.json"
        # No quota in the way: the bench submits a few 10,000 jobs that nothing consumes.
        tenants.write_text(
            json.dumps({"tenants": [{"id": "bench", "api_keys": [KEY], "max_queued_jobs": 10**8}]})
        )
        script = wrk_script(home)
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
            servers: dict[str, tuple[list[str], dict[str, str]]] = {
                "bare_fastapi": (bare, base),
                "bare_fastapi_redis_write": ([*bare, "--redis-url", always_url], base),
            }
            for fsync, (port, _) in redises.items():
                env = dict(
                    base,
                    TTSFLEET_REDIS_URL=f"redis://127.0.0.1:{port}/0",
                    TTSFLEET_TENANTS_FILE=str(tenants),
                    TTSFLEET_RATE_LIMIT_PER_S="0",
                    TTSFLEET_HOME=str(home / f"home-{fsync}"),
                )
                command = [sys.executable, "-m", "fleet", "api", "--port", "{port}"]
                servers[f"ttsfleet_fsync_{fsync}"] = (command, env)
            rounds: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
            for _ in range(options.rounds):
                for name, (command, env) in servers.items():
                    port = free_port()
                    args = [a.replace("{port}", str(port)) for a in command]
                    with serving(args, env, port, home / f"{name}.log") as url:
                        run_wrk(url, script, 2, options.connections)  # warm up
                        rounds[name].append(
                            run_wrk(url, script, options.seconds, options.connections)
                        )
        finally:
            for _, proc in redises.values():
                proc.terminate()
                proc.wait(10)
    best = {name: max(runs, key=lambda r: r["req_per_s"]) for name, runs in rounds.items()}
    bare = best["bare_fastapi"]["req_per_s"]
    bare_redis = best["bare_fastapi_redis_write"]["req_per_s"]
    always = best["ttsfleet_fsync_always"]["req_per_s"]
    everysec = best["ttsfleet_fsync_everysec"]["req_per_s"]
    report: dict[str, Any] = {
        "machine": machine(),
        "connections": options.connections,
        "seconds": options.seconds,
        "rounds": rounds,
        "best": best,
        "api_vs_bare_fastapi": round(always / bare, 3),
        "api_vs_bare_fastapi_redis_write": round(always / bare_redis, 3),
        "fsync_always_vs_everysec": round(always / everysec, 3),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "api.json").write_text(json.dumps(report, indent=2) + "\n")
    for name, result in best.items():
        latency = ", ".join(f"{k} {v:.1f}" for k, v in result.items() if k != "req_per_s")
        print(f"{name:28s} {result['req_per_s']:8.0f} req/s  ({latency})")
    print(f"ttsfleet API ÷ bare FastAPI:                 {report['api_vs_bare_fastapi']:.2f}")
    print(
        "ttsfleet API ÷ bare FastAPI + a Redis write:  "
        f"{report['api_vs_bare_fastapi_redis_write']:.2f}"
    )
    print(f"fsync always ÷ everysec (ttsfleet API):      {report['fsync_always_vs_everysec']:.2f}")


if __name__ == "__main__":
    main()
