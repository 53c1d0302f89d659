"""OpenAI-compatible speech under concurrency, three ways on one machine and one voice:

- `speech`: `POST /v1/audio/speech` on a `ttsfleet up` fleet: admission, the fair queue,
  micro-batching worker(s), the answer once the job ends (api.openai, api.waiters);
- `native`: the same fleet's asynchronous API as a client uses it: `POST /v1/jobs`, poll
  `GET /v1/jobs/{id}` every 50 ms, download the audio;
- `bare`: one uvicorn process whose speech route calls the same engine in the request and
  encodes the answer (the shape of the single-process OpenAI-compatible servers), run in
  FastAPI's thread pool so that concurrent requests do run concurrently.

Each caller sends its next request as soon as the last one answered, with a distinct text
(no result cache hit): 8 requests by one caller, 2 per caller at 8 and 32 callers. Prints requests/s and p50/p99 latency at 1, 8 and 32 callers, and the
throughput ratio of `speech` to `bare` at 32; writes bench/out/speech.json.

    python -m bench.speech [--requests-per-caller 2] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.fleet import running_fleet
from bench.run import OUT, machine
from fleet.embedded import free_port

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = ROOT.parent / "shared" / "bench" / "sentences.txt"
FALLBACK = "Your table for two is ready at the front desk, and the chef sends his regards."
CALLERS = (1, 8, 32)
Request = Callable[[httpx.AsyncClient, str], Awaitable[None]]


def texts() -> Iterator[str]:
    """Corpus sentences, numbered so that no two requests are the same (no cache hits)."""
    lines = [FALLBACK]
    if SENTENCES.is_file():
        lines = [s for s in SENTENCES.read_text().splitlines() if s.strip()]
    n = 0
    while True:
        for line in lines:
            n += 1
            yield f"{line} Number {n}."


async def speech(http: httpx.AsyncClient, text: str) -> None:
    body = {"model": "tts-1", "voice": "alloy", "input": text, "response_format": "wav"}
    response = await http.post("/v1/audio/speech", json=body)
    response.raise_for_status()
    assert response.content[:4] == b"RIFF"


async def native(http: httpx.AsyncClient, text: str) -> None:
    response = await http.post("/v1/jobs", json={"text": text, "format": "wav"})
    response.raise_for_status()
    job = response.json()
    while job["status"] not in ("succeeded", "failed", "canceled"):
        await asyncio.sleep(0.05)
        job = (await http.get(f"/v1/jobs/{job['id']}")).json()
    assert job["status"] == "succeeded", job
    audio = await http.get(f"/v1/jobs/{job['id']}/audio")
    audio.raise_for_status()


async def measure(
    url: str, key: str, request: Request, callers: int, per_caller: int, source: Iterator[str]
) -> dict[str, float]:
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=callers, max_keepalive_connections=callers)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=300, limits=limits) as http:

        async def caller() -> None:
            for _ in range(per_caller if callers > 1 else 4 * per_caller):
                started = time.perf_counter()
                await request(http, next(source))
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(callers)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "callers": callers,
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / elapsed, 2),
        "p50_s": round(statistics.median(latencies), 3),
        "p99_s": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 3),
    }


@contextmanager
def bare_server() -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TTSFLEET_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.bare_speech", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the bare speech server did not start")
            time.sleep(0.2)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def run_all(per_caller: int, concurrency: int) -> dict[str, list[dict[str, float]]]:
    source = texts()
    results: dict[str, list[dict[str, float]]] = {"speech": [], "native": [], "bare": []}
    with running_fleet(concurrency, result_cache="false") as client:
        url = str(client._http.base_url).rstrip("/")
        key = client._http.headers["authorization"].split(" ", 1)[1]
        for callers in CALLERS:
            for name, request in (("speech", speech), ("native", native)):
                row = asyncio.run(measure(url, key, request, callers, per_caller, source))
                print(name, row, flush=True)
                results[name].append(row)
    with bare_server() as url:
        for callers in CALLERS:
            row = asyncio.run(measure(url, "none", speech, callers, per_caller, source))
            print("bare", row, flush=True)
            results["bare"].append(row)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests-per-caller", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2, help="the fleet's worker processes")
    args = parser.parse_args()
    results = run_all(args.requests_per_caller, args.concurrency)
    at_32 = {name: rows[-1] for name, rows in results.items()}
    ratio = at_32["speech"]["requests_per_s"] / at_32["bare"]["requests_per_s"]
    print(f"\n{'callers':>8} {'route':>8} {'req/s':>8} {'p50 s':>8} {'p99 s':>8}")
    for index, callers in enumerate(CALLERS):
        for name, rows in results.items():
            row = rows[index]
            print(
                f"{callers:>8} {name:>8} {row['requests_per_s']:>8} "
                f"{row['p50_s']:>8} {row['p99_s']:>8}"
            )
    print(f"\nspeech / bare throughput at 32 callers: {ratio:.2f}x")
    OUT.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "machine": machine(),
        "fleet_worker_processes": args.concurrency,
        "results": results,
        "speech_over_bare_at_32": round(ratio, 2),
    }
    (OUT / "speech.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
