"""What `GET /v1/jobs?status=queued` costs for a tenant holding 10 jobs and one holding
100,000, side by side: the per-status index read (api.reads, one script with the read rate
limit) against the scan it replaced (every job of the tenant, newest first, filtered).

    python -m bench.listing [--jobs 10,100000] [--repeat 50]

Each tenant's jobs are all `succeeded` except its 10 oldest, which are `queued`: the case
where a scan walks past everything else (and, capped at 1,000 entries, comes back empty).
One redis-server on loopback, no AOF; figures are the median of `--repeat` calls.
Writes bench/out/listing.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import redis
import redis.asyncio

from api.reads import JobReads
from bench.run import OUT
from fleet.embedded import free_port, start_redis, wait_for
from tasks import keys
from tasks.jobs import JobStatus, new_job_id
from tasks.store import tenant_job

TTL_S = 604800
QUEUED = 10
PAGE = 50


def populate(client: redis.Redis, tenant: str, count: int) -> None:
    """`count` job records of `tenant` with their indexes, the oldest QUEUED queued."""
    now_ms = int(time.time() * 1000) - count
    pipe = client.pipeline(transaction=False)
    for n in range(count):
        job_id = new_job_id(now_ms + n)
        status = "queued" if n < QUEUED else "succeeded"
        record = {
            "id": json.dumps(job_id), "tenant": json.dumps(tenant), "status": status,
            "created_at": '"2026-12-01T00:00:00.000Z"', "voice": '"en_US-joe-medium"',
            "model": '"piper-joe"', "text": '"Your table is ready."', "speed": "1.0",
            "format": '"wav"', "sample_rate": "22050", "priority": '"normal"',
            "storage_key": json.dumps(f"{tenant}/{job_id}.wav"), "attempts": "0",
            "metadata": "{}", "created_ts": repr(time.time()),
        }  # fmt: skip
        pipe.hset(keys.job_key(job_id), mapping=record)
        pipe.zadd(keys.tenant_jobs_key(tenant), {job_id: 0})
        pipe.zadd(keys.tenant_status_jobs_key(tenant, status), {job_id: 0})
        if len(pipe) >= 3000:
            pipe.execute()
    pipe.execute()


def scan(client: redis.Redis, tenant: str, status: str, limit: int) -> int:
    """The listing before the index (JobStore.list of 2026-11-30): pages of the tenant's
    jobs, newest first, filtered by status, at most 20 pages of max(limit, 50)."""
    found, start, page = 0, "+", max(limit, 50)
    for _ in range(20):
        ids = cast(
            list[str],
            client.zrange(keys.tenant_jobs_key(tenant), start, "-", desc=True, bylex=True,
                          offset=0, num=page),
        )  # fmt: skip
        if not ids:
            break
        pipe = client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(keys.job_key(job_id))
        for raw in pipe.execute():
            job = tenant_job(raw, tenant)
            if job is not None and job.status.value == status:
                found += 1
                if found == limit:
                    return found
        start = "(" + ids[-1]
    return found


def hgetalls(client: redis.Redis) -> int:
    """Job records Redis has read so far (scripts' calls count too): a cost no other
    process on the box can blur."""
    stats = cast(dict[str, Any], client.info("commandstats"))
    return int(stats.get("cmdstat_hgetall", {}).get("calls", 0))


def median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 3)


async def measure(url: str, sizes: list[int], repeat: int) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(url, decode_responses=True)
    aclient = redis.asyncio.Redis.from_url(url, decode_responses=True)
    reads = JobReads(aclient, per_s=1e9, burst=1_000_000_000, ttl_s=TTL_S)
    rows = []
    for size in sizes:
        tenant = f"tenant-{size}"
        populate(client, tenant, size)
        # Not interleaved: a scan of 100,000 jobs must not slow the index reads after it.
        reads_before = hgetalls(client)
        index_s = []
        for _ in range(repeat):
            started = time.perf_counter()
            jobs, _ = await reads.list(tenant, JobStatus.QUEUED, PAGE, None)
            index_s.append(time.perf_counter() - started)
        index_reads = (hgetalls(client) - reads_before) / repeat
        reads_before = hgetalls(client)
        scan_s = []
        for _ in range(repeat):
            started = time.perf_counter()
            found_scan = scan(client, tenant, "queued", PAGE)
            scan_s.append(time.perf_counter() - started)
        scan_reads = (hgetalls(client) - reads_before) / repeat
        rows.append({
            "jobs": size, "index_ms": median_ms(index_s), "scan_ms": median_ms(scan_s),
            "index_records_read": index_reads, "scan_records_read": scan_reads,
            "found_by_index": len(jobs), "found_by_scan": found_scan,
        })  # fmt: skip
    await aclient.aclose()
    client.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="10,100000")
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    sizes = [int(n) for n in args.jobs.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        proc = start_redis(Path(tmp), port, fsync="no")
        try:
            client = redis.Redis(port=port, socket_connect_timeout=0.5)
            wait_for("redis-server", client.ping, 20)
            rows = asyncio.run(measure(f"redis://127.0.0.1:{port}/0", sizes, args.repeat))
        finally:
            proc.terminate()
            proc.wait(10)
    print(f"GET /v1/jobs?status=queued&limit={PAGE}: median of {args.repeat} (ms)")
    print(f"{'jobs':>8} {'index ms':>9} {'scan ms':>9} {'records read (index / scan)':>29}"
          f" {'found (index / scan)':>22}")  # fmt: skip
    for row in rows:
        print(
            f"{row['jobs']:>8} {row['index_ms']:>9.3f} {row['scan_ms']:>9.3f} "
            f"{row['index_records_read']:>14.0f} / {row['scan_records_read']:<12.0f}"
            f"{row['found_by_index']:>10} / {row['found_by_scan']:<10}"
        )
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "listing.json").write_text(json.dumps({"page": PAGE, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
