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
import redis.asyncio
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

from tasks.backlog import Backlog, read_backlog_async
from tasks.settings import Settings

REQUESTS = Counter(
    "ttsfleet_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
LATENCY = Histogram(
    "ttsfleet_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
# /metrics needs no key: tenant ids (and how much each submits) are shown only when
# TTSFLEET_METRICS_TENANT_LABELS=true; otherwise every tenant counts under tenant="all".
ALL_TENANTS = "all"
_tenant_labels = False


def configure(settings: Settings) -> None:
    """Apply the process's settings to the per-tenant series (called by api.app)."""
    global _tenant_labels
    _tenant_labels = settings.metrics_tenant_labels


class _PerTenant:
    """A counter whose first label is the tenant, shown only when the settings allow it."""

    def __init__(self, counter: Counter) -> None:
        self._counter = counter

    def labels(self, tenant: str, *rest: str) -> Counter:
        return self._counter.labels(tenant if _tenant_labels else ALL_TENANTS, *rest)


JOBS_SUBMITTED = _PerTenant(
    Counter("ttsfleet_jobs_submitted_total", "Jobs accepted with 202", ["tenant", "voice"])
)
JOBS_CANCELED = _PerTenant(
    Counter("ttsfleet_jobs_canceled_total", "Jobs canceled through the API", ["tenant"])
)


class QueueDepthCollector(Collector):
    """The backlog as read from Redis just before a scrape (`scrape`), so every API process
    reports the same; read on the event loop with redis.asyncio, not by a blocking client."""

    def __init__(self, backlogs: list[Backlog]) -> None:
        self._backlogs = backlogs

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "ttsfleet_queue_depth", "Messages waiting in a model's queue", labels=["queue"]
        )
        pending = GaugeMetricFamily(
            "ttsfleet_pending_jobs",
            "Jobs waiting for the dispatcher, per model (the backlog; the queue is kept shallow)",
            labels=["model"],
        )
        oldest = GaugeMetricFamily(
            "ttsfleet_queue_oldest_age_seconds",
            "Age of the oldest job waiting for a model, pending or queued (0 when none waits)",
            labels=["queue"],
        )
        for backlog in self._backlogs:
            depth.add_metric([backlog.queue], float(backlog.queued))
            pending.add_metric([backlog.model], float(backlog.pending))
            oldest.add_metric([backlog.queue], backlog.oldest_age_s or 0.0)
        yield depth
        yield pending
        yield oldest


async def read_backlogs(client: redis.asyncio.Redis, models: list[str]) -> list[Backlog]:
    """Every model's backlog; none (the gauges left out) while Redis does not answer."""
    try:
        return [await read_backlog_async(client, model) for model in models]
    except redis.RedisError:
        return []


async def scrape(client: redis.asyncio.Redis, models: list[str]) -> Response:
    queue_depth = QueueDepthCollector(await read_backlogs(client, models))
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
    streams cost measurable throughput on the submit path; each route's series are looked up
    once (`labels` takes a lock and builds a key on every call).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

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
            key = (scope["method"], path, status)
            series = self._series.get(key)
            if series is None:
                series = (
                    REQUESTS.labels(key[0], path, str(status)),
                    LATENCY.labels(key[0], path),
                )
                self._series[key] = series
            series[0].inc()
            series[1].observe(time.perf_counter() - started)
