"""Prometheus metrics of the API: requests by route and status, jobs submitted, queue depth
and the pending backlog.

With several API processes, `PROMETHEUS_MULTIPROC_DIR` is set by `api.server` before any
process imports prometheus_client, and a scrape aggregates every process's files.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import redis
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tasks import keys
from tasks.app import PRIORITY_STEPS
from tasks.dispatcher import pending_jobs

REQUESTS = Counter(
    "ttsfleet_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
LATENCY = Histogram(
    "ttsfleet_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
JOBS_SUBMITTED = Counter(
    "ttsfleet_jobs_submitted_total", "Jobs accepted with 202", ["tenant", "voice"]
)
JOBS_CANCELED = Counter("ttsfleet_jobs_canceled_total", "Jobs canceled through the API", ["tenant"])


def queue_names(queue: str) -> list[str]:
    """The Redis lists kombu keeps for one queue, one per priority step."""
    return [queue if step == 0 else f"{queue}:{step}" for step in PRIORITY_STEPS]


class QueueDepthCollector(Collector):
    """Reads queue lengths from Redis at scrape time, so every API process reports the same."""

    def __init__(self, client: redis.Redis, models: list[str]) -> None:
        self._redis = client
        self._queues = [keys.synth_queue(m) for m in models]
        self._models = models

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "ttsfleet_queue_depth", "Messages waiting in a model's queue", labels=["queue"]
        )
        try:
            pipe = self._redis.pipeline(transaction=False)
            for queue in self._queues:
                for name in queue_names(queue):
                    pipe.llen(name)
            lengths = pipe.execute()
        except redis.RedisError:
            return
        steps = len(PRIORITY_STEPS)
        for i, queue in enumerate(self._queues):
            gauge.add_metric([queue], float(sum(lengths[i * steps : (i + 1) * steps])))
        yield gauge
        pending = GaugeMetricFamily(
            "ttsfleet_pending_jobs",
            "Jobs waiting for the dispatcher, per model (the backlog; the queue is kept shallow)",
            labels=["model"],
        )
        try:
            for model in self._models:
                pending.add_metric([model], float(pending_jobs(self._redis, model)))
        except redis.RedisError:
            return
        yield pending


def scrape(queue_depth: Collector) -> Response:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        registry.register(queue_depth)
        data = generate_latest(registry)
    else:
        from prometheus_client import REGISTRY

        registry.register(queue_depth)
        data = generate_latest(REGISTRY) + generate_latest(registry)
    return Response(data, media_type=CONTENT_TYPE_LATEST)


class RequestMetrics:
    """ASGI middleware: count and time every HTTP request under its route template.

    A plain ASGI wrapper rather than `@app.middleware("http")`, whose per-request task and
    streams cost measurable throughput on the submit path.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            REQUESTS.labels(scope["method"], path, str(status)).inc()
            LATENCY.labels(scope["method"], path).observe(time.perf_counter() - started)
