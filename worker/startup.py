"""Worker start-up: load the model in the process that will use it, pick how it batches.

Models load in the prefork child (`worker_process_init`), never in the parent that forks
afterwards: CUDA does not survive fork, and each child needs its own ONNX session. With
the threads pool (batching engines) the worker process itself loads the model before it
consumes, and one `Batcher` thread serves all task threads.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

from celery import signals

from tasks.settings import Settings, get_settings
from tasks.storage import storage_from_settings
from tasks.store import JobStore
from tasks.tenants import TenantDirectory
from worker import metrics
from worker.batcher import Batcher, DirectSynthesizer, find_knee
from worker.cache import ResultCache
from worker.engines import build_engine
from worker.lease import HOLDER, LeaseKeeper, Runs
from worker.recycle import RecyclePolicy, install_in_prefork_child
from worker.runner import JobRunner, Synthesizer
from worker.uploads import RetryingStorage

log = logging.getLogger(__name__)

_runner: JobRunner | None = None


def build_runner(settings: Settings, batched: bool) -> JobRunner:
    """Load this worker's model and connect the store, storage and cache."""
    model = settings.serving_model()
    spec = settings.models.get(model)
    if spec is None:
        raise SystemExit(
            f"model {model!r} is not in TTSFLEET_MODELS ({', '.join(settings.models)})"
        )
    engine = build_engine(spec)
    engine.load(settings.worker_device)
    log.info(
        "model %s (%s, %s) loaded on %s in pid %d",
        model, spec.engine, engine.version, settings.worker_device, os.getpid(),
    )  # fmt: skip
    engine = metrics.measured(engine, model, settings.worker_device)
    synthesizer: Synthesizer
    if batched:
        max_size = settings.batch_max_size
        if settings.batch_autotune:
            max_size = find_knee(engine, max_size)
        synthesizer = Batcher(
            engine, max_size, settings.batch_max_wait_ms / 1000, on_batch=_log_batch
        )
        log.info(
            "batching up to %d items, waiting at most %d ms", max_size, settings.batch_max_wait_ms
        )
    else:
        synthesizer = DirectSynthesizer(engine)
    store = JobStore.from_url(settings.redis_url, settings.job_ttl_s)
    cache = None
    if settings.result_cache:
        sharing = TenantDirectory.from_settings(settings).sharing_result_cache()
        cache = ResultCache(store.redis, settings.job_ttl_s, sharing=sharing)
    runner = JobRunner(
        store,
        RetryingStorage(
            storage_from_settings(settings), settings.storage_attempts,
            settings.storage_retry_wait_s,
        ),
        synthesizer, settings.max_attempts, cache,
        engine.version, runs=Runs(HOLDER), lease_ms=int(settings.job_lease_s * 1000),
        largest_group=settings.batch_max_size, stream_entries=settings.stream_max_entries,
        stream_ttl_s=settings.stream_ttl_s, progress_event_s=settings.progress_event_s,
        max_text_chars=settings.max_text_chars, unit_chars=settings.unit_chars,
    )  # fmt: skip
    if settings.worker_ready_file is not None:
        settings.worker_ready_file.touch()
    return runner


def _log_batch(size: int, seconds: float) -> None:
    log.info("batch of %d items in %.1f ms", size, seconds * 1000)


def runner() -> JobRunner:
    """This process's runner; loaded at start-up, or now if a pool skipped the hooks."""
    global _runner
    if _runner is None:
        _runner = build_runner(get_settings(), batched=False)
    return _runner


@signals.worker_process_init.connect
def _load_in_child(**_: Any) -> None:
    global _runner
    settings = get_settings()
    _runner = build_runner(settings, batched=False)
    install_in_prefork_child(recycle_policy(settings))


def recycle_policy(settings: Settings) -> RecyclePolicy:
    return RecyclePolicy(
        settings.worker_max_jobs, settings.worker_max_rss_mb, settings.worker_max_gpu_mb
    )


@signals.celeryd_after_setup.connect
def _load_without_fork(instance: Any = None, **_: Any) -> None:
    """After logging is set up and before the consumer starts: a pool that does not fork
    runs tasks in this process, so the model loads here."""
    global _runner
    pool = getattr(instance, "pool_cls", None)
    name = str(pool if isinstance(pool, str) else getattr(pool, "__module__", ""))
    if "prefork" not in name:
        settings = get_settings()
        _runner = build_runner(settings, batched="thread" in name)
        global _policy
        _policy = recycle_policy(settings)


# Set where this process runs the engine itself (threads, solo); prefork children use
# billiard's between-jobs check instead (worker.recycle).
_policy: RecyclePolicy | None = None
_recycling = False


@signals.task_postrun.connect
def _recycle_after_job(**_: Any) -> None:
    """Past a limit, ask for a warm shutdown: the jobs in hand finish, the prefetched ones go
    back to the queue, and the supervisor (worker.supervisor) starts a fresh process."""
    global _recycling
    if _policy is None or _recycling:
        return
    reason = _policy.job_done()
    if reason is not None:
        _recycling = True
        log.warning("recycling worker process %d: %s", os.getpid(), reason)
        os.kill(os.getpid(), signal.SIGTERM)


_leases: LeaseKeeper | None = None


@signals.worker_ready.connect
def _keep_leases(**_: Any) -> None:
    """In the main process, whatever the pool: lease every job whose message it holds."""
    global _leases
    settings = get_settings()
    store = JobStore.from_url(settings.redis_url, settings.job_ttl_s)
    _leases = LeaseKeeper(store.redis, HOLDER, settings.job_lease_s)
    _leases.start()


@signals.worker_shutdown.connect
def _free_leases(**_: Any) -> None:
    """The pool has stopped, so nothing runs here: free the leases of handed-back jobs."""
    if _leases is not None:
        freed = _leases.stop()
        log.info("freed %d job leases on shutdown", freed)
