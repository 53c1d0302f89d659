"""The status poll answers a record's fields as stored (api.views): the same JSON as building
a `Job` from the record and calling `public()`, at every stage of a job's life, with the
values the store's and the callbacks' Lua scripts write."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import redis

from api.reads import JobReads
from api.views import public_view
from tasks import keys
from tasks.jobs import (
    AudioFormat,
    AudioInfo,
    CallbackInfo,
    ErrorInfo,
    Job,
    JobStatus,
    Priority,
    new_job_id,
    utc_now,
)
from tasks.store import JobStore, tenant_job
from tests.conftest import async_twin


def new_job(**overrides: Any) -> Job:
    job_id = new_job_id()
    values: dict[str, Any] = {
        "id": job_id,
        "tenant": "acme",
        "status": JobStatus.QUEUED,
        "created_at": utc_now(),
        "voice": "en_US-joe-medium",
        "model": "piper",
        "text": 'Grüße, 東京 — "quoted" \\ and / slashes.',
        "speed": 1.25,
        "format": AudioFormat.FLAC,
        "sample_rate": 16000,
        "priority": Priority.HIGH,
        "storage_key": f"acme/{job_id}.flac",
    }
    values.update(overrides)
    return Job(**values)


def polled(client: redis.Redis, tenant: str, job_id: str) -> dict[str, Any] | None:
    """What the API's status poll answers (api.reads: the view's fields only, by HMGET)."""

    async def read() -> dict[str, Any] | None:
        async with async_twin(client) as twin:
            return await JobReads(twin, 0, 0, 3600).view(tenant, job_id)

    return asyncio.run(read())


def assert_same_view(client: redis.Redis, job_id: str) -> dict[str, Any]:
    raw = cast(dict[str, str], client.hgetall(keys.job_key(job_id)))
    job = tenant_job(raw, "acme")
    assert job is not None
    view = public_view(raw, "acme")
    assert view == job.public() == polled(client, "acme", job_id)
    # Types too (1 == 1.0 == True in Python): the JSON must not change.
    assert {k: type(v) for k, v in view.items()} == {k: type(v) for k, v in job.public().items()}
    assert public_view(raw, "globex") is None and polled(client, "globex", job_id) is None
    return view


def test_the_view_equals_the_job_at_every_stage(store: JobStore, redis_client: redis.Redis) -> None:
    plain = new_job(metadata={"order": 7, "ratio": 0.1, "nested": {"ok": [True, None, "ü"]}})
    called = new_job(
        callback=CallbackInfo(url="https://example.com/hook/a"), deadline_s=60, speed=1.0
    )
    doomed = new_job()
    for job in (plain, called, doomed):
        store.create(job)
        assert assert_same_view(redis_client, job.id)["status"] == "queued"

    assert store.claim(plain.id, max_attempts=3).verdict.value == "run"
    assert assert_same_view(redis_client, plain.id)["attempts"] == 1
    audio = AudioInfo(
        url="file:///tmp/x.flac",
        format=AudioFormat.FLAC,
        sample_rate=16000,
        duration_s=1.5,
        bytes=4096,
        sha256="ab" * 32,
    )
    store.succeed(plain.id, audio)
    assert assert_same_view(redis_client, plain.id)["audio"]["duration_s"] == 1.5

    store.fail(doomed.id, ErrorInfo(code="engine_error", message="it broke"))
    assert assert_same_view(redis_client, doomed.id)["error"]["code"] == "engine_error"

    store.cancel(called.id)
    # The callbacks worker rewrites `callback` with cjson (callbacks/lua/outbox_settle.lua).
    redis_client.eval(
        "local cb = cjson.decode(redis.call('HGET', KEYS[1], 'callback'))"
        " cb['state'] = 'delivered' cb['attempts'] = 2 cb['last_status'] = 200"
        " redis.call('HSET', KEYS[1], 'callback', cjson.encode(cb))",
        1,
        keys.job_key(called.id),
    )
    view = assert_same_view(redis_client, called.id)
    assert view["status"] == "canceled"
    assert view["callback"] == {
        "url": "https://example.com/hook/a",
        "state": "delivered",
        "attempts": 2,
        "last_status": 200,
    }


def test_no_record_and_a_field_the_record_lacks(redis_client: redis.Redis) -> None:
    assert public_view({}, "acme") is None
    job = new_job()
    store = JobStore(redis_client, 3600)
    store.create(job)
    redis_client.hdel(keys.job_key(job.id), "started_at", "metadata")
    assert_same_view(redis_client, job.id)


def test_a_book_is_polled_with_its_progress_and_its_units_are_not_jobs(
    store: JobStore, redis_client: redis.Redis
) -> None:
    book = new_job(text="A sentence of a long book. " * 40)
    store.create(book)
    store.claim(book.id, max_attempts=3)
    assert store.fan_out(book, [["A sentence of a long book."], ["And its second unit."]]) == 1
    view = assert_same_view(redis_client, book.id)
    assert view["progress"] == {"pieces_done": 0, "pieces_total": 2, "audio_s": 0.0}
    unit = f"{book.id}.0"
    raw = cast(dict[str, str], redis_client.hgetall(keys.job_key(unit)))
    assert raw and public_view(raw, "acme") is None and polled(redis_client, "acme", unit) is None
