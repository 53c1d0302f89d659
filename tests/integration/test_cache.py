"""The result cache: identical requests reuse stored audio and are synthesized once."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import redis

from tasks.jobs import JobStatus
from tasks.storage import FileStorage
from tasks.store import JobStore
from tests.engines import DelayedEngine, HalfSecondEngine
from tests.helpers.jobs import make_job
from worker.batcher import DirectSynthesizer
from worker.cache import ResultCache
from worker.runner import JobRunner


@pytest.fixture
def storage(tmp_path: Path) -> FileStorage:
    return FileStorage(tmp_path / "audio")


def runner_for(
    store: JobStore,
    storage: FileStorage,
    engine: HalfSecondEngine,
    redis_client: redis.Redis,
    version: str = "v1",
    sharing: frozenset[str] = frozenset(),
) -> JobRunner:
    cache = ResultCache(store.redis, ttl_s=3600, sharing=sharing)
    return JobRunner(store, storage, DirectSynthesizer(engine), 3, cache, model_version=version)


def test_identical_request_reuses_audio_under_its_own_key(
    store: JobStore, storage: FileStorage, redis_client: redis.Redis
) -> None:
    engine = HalfSecondEngine()
    runner = runner_for(store, storage, engine, redis_client)
    first, second = make_job(tenant="acme"), make_job(tenant="acme")
    for job in (first, second):
        store.create(job)
        assert runner.run(job.id).status is JobStatus.SUCCEEDED
    assert engine.calls == 1
    a, b = store.get(first.id), store.get(second.id)
    assert a is not None and b is not None and a.audio is not None and b.audio is not None
    assert a.audio.sha256 == b.audio.sha256 and b.audio.url == f"/v1/jobs/{second.id}/audio"
    assert storage.local_path(second.storage_key) is not None  # its own object


@pytest.mark.parametrize(
    ("sharing", "calls", "namespaces"),
    [
        # Per tenant by default: globex learns nothing of acme's texts.
        (frozenset(), 2, {"t.acme", "t.globex"}),
        # One tenant alone cannot open the other's entries.
        (frozenset({"acme"}), 2, {"shared", "t.globex"}),
        # Both opted in: one synthesis.
        (frozenset({"acme", "globex"}), 1, {"shared"}),
    ],
    ids=["neither shares", "one shares", "both share"],
)
def test_a_hit_crosses_tenants_only_between_tenants_that_both_share(
    store: JobStore,
    storage: FileStorage,
    redis_client: redis.Redis,
    sharing: frozenset[str],
    calls: int,
    namespaces: set[str],
) -> None:
    engine = HalfSecondEngine()
    runner = runner_for(store, storage, engine, redis_client, sharing=sharing)
    for job in (make_job(tenant="acme"), make_job(tenant="globex")):
        store.create(job)
        assert runner.run(job.id).status is JobStatus.SUCCEEDED
    assert engine.calls == calls
    assert {key.split(":")[2] for key in redis_client.keys("ttsfleet:cache:*")} == namespaces


def test_other_speed_format_or_model_version_is_a_miss(
    store: JobStore, storage: FileStorage, redis_client: redis.Redis
) -> None:
    engine = HalfSecondEngine()
    for job, version in (
        (make_job(), "v1"),
        (make_job(speed=1.5), "v1"),
        (make_job(sample_rate=8000), "v1"),
        (make_job(), "v2"),
    ):
        store.create(job)
        runner_for(store, storage, engine, redis_client, version).run(job.id)
    assert engine.calls == 4


def test_deleted_object_is_a_miss_not_an_error(
    store: JobStore, storage: FileStorage, redis_client: redis.Redis
) -> None:
    engine = HalfSecondEngine()
    runner = runner_for(store, storage, engine, redis_client)
    first, second = make_job(), make_job()
    store.create(first)
    runner.run(first.id)
    storage.delete(first.storage_key)
    store.create(second)
    assert runner.run(second.id).status is JobStatus.SUCCEEDED
    assert engine.calls == 2


def test_concurrent_identical_requests_are_synthesized_once(
    store: JobStore, storage: FileStorage, redis_client: redis.Redis
) -> None:
    engine = DelayedEngine()
    jobs = [make_job(tenant="acme") for _ in range(4)]
    for job in jobs:
        store.create(job)
    # Separate runners stand for separate worker processes sharing Redis and storage.
    runners = [runner_for(store, storage, engine, redis_client) for _ in jobs]
    threads = [threading.Thread(target=r.run, args=(j.id,)) for r, j in zip(runners, jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert engine.calls == 1
    assert all(store.get(j.id).status is JobStatus.SUCCEEDED for j in jobs)  # type: ignore[union-attr]
