"""What the strict parser (api.body.parse_json) costs per request against plain
`json.loads`, side by side, on the bodies the API sees: a typical job, a job with a
metadata object, a batch of 1,000 jobs, and metadata nested 32 levels (where the depth walk
runs).

    python -m bench.body [--repeat 2000]

Best of 5 rounds of `--repeat` parses each, in microseconds per body. Writes
bench/out/body.json.
"""

from __future__ import annotations

import argparse
import json
import timeit
from typing import Any

from api.body import MAX_DEPTH, parse_json
from bench.run import OUT

JOB = {"text": "Your table for two is ready at the front desk.", "voice": "en_US-joe-medium"}
BODIES: dict[str, bytes] = {
    "job": json.dumps(JOB).encode(),
    "job + metadata": json.dumps(
        {
            **JOB,
            "speed": 1.1,
            "deadline_s": 600,
            "metadata": {"order": 123456, "tags": ["a", "b", "c"], "customer": {"id": "c-42"}},
        }
    ).encode(),
    "batch of 1000": json.dumps({"jobs": [JOB] * 1000}).encode(),
    "nested 32 deep": (
        b'{"text": "hi", "metadata": '
        + b'{"a":' * (MAX_DEPTH - 1)
        + b"1"
        + b"}" * (MAX_DEPTH - 1)
        + b"}"
    ),
}


def best_us(call: Any, repeat: int) -> float:
    return min(timeit.repeat(call, number=repeat, repeat=5)) / repeat * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()
    rows = []
    for name, raw in BODIES.items():
        repeat = max(1, args.repeat // 100) if len(raw) > 10000 else args.repeat
        plain = best_us(lambda raw=raw: json.loads(raw), repeat)
        strict = best_us(lambda raw=raw: parse_json(raw), repeat)
        rows.append({"body": name, "bytes": len(raw), "json_loads_us": round(plain, 2),
                     "parse_json_us": round(strict, 2)})  # fmt: skip
    print(f"{'body':<16} {'bytes':>8} {'json.loads µs':>14} {'parse_json µs':>14} {'extra µs':>9}")
    for r in rows:
        extra = r["parse_json_us"] - r["json_loads_us"]
        print(f"{r['body']:<16} {r['bytes']:>8} {r['json_loads_us']:>14.2f} "
              f"{r['parse_json_us']:>14.2f} {extra:>9.2f}")  # fmt: skip
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "body.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
