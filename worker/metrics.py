"""Prometheus metrics of a synth worker, served by its main process (`--metrics-port`).

Prefork children run the jobs, so every process writes its samples to files in one
directory (prometheus_client's multiprocess mode) and the main process sums them at
scrape time. The directory is this worker's own (`<home>/prometheus-worker-<pid>`, or
`PROMETHEUS_MULTIPROC_DIR` where a deployment sets it) and is emptied at start, so a
restarted worker never adds up a previous run's counters. A child that died leaves live
gauge files behind; each scrape marks the dead pids (`mark_process_dead`) first.

`worker.metric_files.prepare` must run before this module is imported.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge, Histogram

from tasks.jobs import JobStatus
from tasks.settings import get_settings
from worker.metric_files import MULTIPROC_ENV, forget_dead_children

if TYPE_CHECKING:
    from worker.engines import Audio, Batching, Engine, SynthesisRequest
    from worker.outcome import Outcome


JOBS_FINISHED = Counter(
    "ttsfleet_jobs_finished_total", "Jobs a worker ended", ["model", "voice", "status"]
)
JOBS_FAILED = Counter(
    "ttsfleet_jobs_failed_total", "Jobs a worker ended as failed", ["model", "voice", "code"]
)
BATCH_SIZE = Histogram(
    "ttsfleet_batch_size",
    "Requests in one engine call",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
ENGINE_SECONDS = Histogram(
    "ttsfleet_engine_seconds",
    "Time of one engine call (a batch)",
    ["model"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
AUDIO_SECONDS = Counter("ttsfleet_audio_seconds_total", "Seconds of speech produced", ["model"])
REALTIME_FACTOR = Histogram(
    "ttsfleet_realtime_factor",
    "Engine seconds per second of speech, per engine call (below 1 is faster than real time)",
    ["model"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
)
RECYCLES = Counter(
    "ttsfleet_worker_recycles_total", "Worker processes replaced on purpose", ["reason"]
)
GPU_MEMORY = Gauge(
    "ttsfleet_gpu_memory_bytes",
    "CUDA memory reserved by torch, summed over this worker's live processes",
    ["device"],
    multiprocess_mode="livesum",
)


def record_outcome(outcome: Outcome) -> None:
    """Count a job that ended here; a redelivery (status queued) is not an end, and a unit
    of a book (tasks.units) is no job: its book is counted when this unit's run ended it."""
    if outcome.unit:
        if outcome.book is not None:
            record_outcome(replace(outcome, status=outcome.book, unit=False, book=None))
        return
    if outcome.status is None or outcome.status is JobStatus.QUEUED:
        return
    model = _model()
    JOBS_FINISHED.labels(model, outcome.voice, outcome.status.value).inc()
    if outcome.status is JobStatus.FAILED:
        JOBS_FAILED.labels(model, outcome.voice, outcome.code or "unknown").inc()


def record_recycle(reason: str) -> None:
    """A worker process replaced on purpose: `max_jobs`, `rss` or `gpu_memory`."""
    RECYCLES.labels(reason).inc()
    from worker import heartbeat

    heartbeat.count_recycle()


class MeasuredEngine:
    """An engine that records each call's size, time, speech length and GPU memory."""

    def __init__(self, engine: Engine, model: str, device: str) -> None:
        self._engine = engine
        self._model = model
        self._device = device

    @property
    def batching(self) -> Batching:
        return self._engine.batching

    @property
    def version(self) -> str:
        return self._engine.version

    def load(self, device: str) -> None:
        self._engine.load(device)
        self._record_gpu_memory()

    def synthesize(self, batch: Sequence[SynthesisRequest]) -> list[Audio]:
        started = time.perf_counter()
        outputs = self._engine.synthesize(batch)
        seconds = time.perf_counter() - started
        speech = sum(audio.duration_s for audio in outputs)
        BATCH_SIZE.labels(self._model).observe(len(batch))
        ENGINE_SECONDS.labels(self._model).observe(seconds)
        AUDIO_SECONDS.labels(self._model).inc(speech)
        if speech > 0:
            REALTIME_FACTOR.labels(self._model).observe(seconds / speech)
        self._record_gpu_memory()
        return outputs

    def _record_gpu_memory(self) -> None:
        # Only where the engine already brought torch in: importing it costs seconds and RAM.
        torch: Any = sys.modules.get("torch")
        if torch is not None and self._device.startswith("cuda") and torch.cuda.is_available():
            GPU_MEMORY.labels(self._device).set(torch.cuda.memory_reserved())


def measured(engine: Engine, model: str, device: str) -> Engine:
    return MeasuredEngine(engine, model, device)


def serve(port: int, queue: str) -> None:
    """Start the scrape endpoint in this (the main) process, on a daemon thread."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    registry.register(_LiveFiles())
    registry.register(_InFlight(queue))
    start_http_server(port, registry=registry)


class _LiveFiles:
    """Every process's samples, after forgetting the live gauges of dead children."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client import multiprocess

        directory = os.environ.get(MULTIPROC_ENV)
        if not directory:
            return
        forget_dead_children(Path(directory))
        collector = multiprocess.MultiProcessCollector(None, directory)  # type: ignore[no-untyped-call]
        yield from collector.collect()  # type: ignore[no-untyped-call]


class _InFlight:
    """Jobs this worker holds (prefetched or running, not yet acked), read from Celery's
    bookkeeping in the main process, which sees every child's jobs."""

    def __init__(self, queue: str) -> None:
        self._queue = queue

    def collect(self) -> Iterator[Any]:
        from celery.worker import state
        from prometheus_client.core import GaugeMetricFamily

        gauge = GaugeMetricFamily(
            "ttsfleet_jobs_in_flight",
            "Jobs this worker took from its queue and has not finished",
            labels=["queue"],
        )
        gauge.add_metric([self._queue], float(len(state.reserved_requests)))
        yield gauge


def _model() -> str:
    return get_settings().serving_model()
