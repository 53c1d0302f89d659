"""Worker start-up: pin the device, load the model in the process that will use it.

Models load in the prefork child (`worker_process_init`), never in the parent that forks
afterwards: CUDA does not survive fork, and each child needs its own ONNX session.
With a pool that does not fork (solo, threads), the worker process itself loads it.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import signals

from tasks.settings import Settings, get_settings
from tasks.storage import storage_from_settings
from tasks.store import JobStore
from worker.engines import build_engine
from worker.runner import JobRunner

log = logging.getLogger(__name__)

_runner: JobRunner | None = None


def build_runner(settings: Settings) -> JobRunner:
    """Load this worker's model and connect the store and storage."""
    model = settings.serving_model()
    spec = settings.models.get(model)
    if spec is None:
        raise SystemExit(
            f"model {model!r} is not in TTSFLEET_MODELS ({', '.join(settings.models)})"
        )
    engine = build_engine(spec)
    engine.load(settings.worker_device)
    log.info(
        "model %s (%s) loaded on %s in pid %d",
        model,
        spec.engine,
        settings.worker_device,
        os.getpid(),
    )
    storage = storage_from_settings(settings)
    store = JobStore.from_url(settings.redis_url, settings.job_ttl_s)
    return JobRunner(store, storage, engine, settings.max_attempts)


def runner() -> JobRunner:
    """This process's runner; loaded at start-up, or now if a pool skipped the hooks."""
    global _runner
    if _runner is None:
        _runner = build_runner(get_settings())
    return _runner


@signals.worker_process_init.connect
def _load_in_child(**_: Any) -> None:
    runner()


@signals.worker_init.connect
def _load_without_fork(sender: Any = None, **_: Any) -> None:
    pool = getattr(sender, "pool_cls", None)
    name = pool if isinstance(pool, str) else getattr(pool, "__module__", "")
    if "prefork" not in str(name):
        runner()
