"""Submit → succeeded round trip against a running fleet (`make up`), one job at a time.

Prints the median and p90 of the whole round trip and splits it into queue wait
(created → started), work (started → finished: synthesis, encoding, storage) and the rest
(HTTP, polling). Usage: python -m bench.roundtrip [--n 20] [--corpus PATH]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import datetime
from pathlib import Path

from client.client import Client

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "bench" / "sentences.txt"


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    args = parser.parse_args()
    lines = [line.strip() for line in args.corpus.read_text().splitlines() if line.strip()]
    short = sorted(lines, key=len)[: args.n]
    totals, waits, works = [], [], []
    with Client.from_env() as client:
        client.wait(client.submit("Warm up.")["id"])
        for text in short:
            started = time.perf_counter()
            job = client.submit(text)
            job = client.wait(job["id"], poll_s=0.005)
            totals.append(time.perf_counter() - started)
            assert job["status"] == "succeeded", job
            waits.append(ts(job["started_at"]) - ts(job["created_at"]))
            works.append(ts(job["finished_at"]) - ts(job["started_at"]))

    def ms(values: list[float], q: float) -> float:
        return (
            1000 * statistics.quantiles(values, n=100)[int(q) - 1]
            if q != 50
            else 1000 * statistics.median(values)
        )

    print(
        f"{len(totals)} short sentences ({min(map(len, short))}-{max(map(len, short))} chars), "
        "one at a time"
    )
    print(f"round trip  p50 {ms(totals, 50):7.1f} ms   p90 {ms(totals, 90):7.1f} ms")
    print(f"queue wait  p50 {ms(waits, 50):7.1f} ms")
    print(f"work        p50 {ms(works, 50):7.1f} ms   (synthesis + encoding + storage)")


if __name__ == "__main__":
    main()
