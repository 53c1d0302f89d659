"""The bare FastAPI baselines for `bench.api`: the same route, body model and server set-up
as the submit API (api/server.py's socket, uvicorn, no access log), but no auth, no quota,
no job model: what any FastAPI service answering this request costs on this machine; with
`--redis-url`, plus one pipelined write of the body to Redis (HSET + EXPIRE + LPUSH, from
the event loop with redis.asyncio): the floor of any service that records a job; and
`GET /v1/jobs/{id}`, one HGETALL of that job's record returned as FastAPI returns a dict:
the floor of any status poll.

    python -m bench.bare_api --port 8100 [--redis-url redis://127.0.0.1:6380/0]
"""

from __future__ import annotations

import argparse
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from tasks import keys
from tasks.jobs import JobRequest, new_job_id

app = FastAPI()
_redis: Any = None


@app.post("/v1/jobs", status_code=202)
async def submit(body: JobRequest) -> JSONResponse:
    job_id = new_job_id()
    if _redis is not None:
        async with _redis.pipeline(transaction=True) as pipe:
            pipe.hset(f"bare:job:{job_id}", "request", body.model_dump_json())
            pipe.expire(f"bare:job:{job_id}", 3600)
            pipe.lpush("bare:pending", job_id)
            await pipe.execute()
    return JSONResponse({"id": job_id, "status": "queued", "voice": body.voice}, 202)


@app.get("/v1/jobs/{job_id}")
async def read(job_id: str) -> dict[str, Any]:
    """The record as Redis holds it (the same ttsfleet job record the API's poll reads)."""
    record: dict[str, Any] = await _redis.hgetall(keys.job_key(job_id))
    return record


def main() -> None:
    import uvicorn

    from api.server import bind

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url")
    args = parser.parse_args()
    if args.redis_url:
        import redis.asyncio

        global _redis
        _redis = redis.asyncio.Redis.from_url(args.redis_url, decode_responses=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[bind("127.0.0.1", args.port)])


if __name__ == "__main__":
    main()
