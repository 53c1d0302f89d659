"""The backlog as the API's /metrics and `ttsfleet fleet` read it, on a real Redis with
real Celery messages: counts and the age of the oldest job, pending or queued."""

from __future__ import annotations

import time

import redis

from tasks.app import create_app as create_celery
from tasks.app import send_synthesis
from tasks.backlog import message_job_id, read_backlog
from tasks.jobs import Priority, job_id_ms, new_job_id
from tasks.settings import Settings

MODEL = "piper-joe"


def test_job_id_carries_its_creation_time() -> None:
    assert job_id_ms(new_job_id(1_700_000_000_123)) == 1_700_000_000_123
    assert job_id_ms("not-a-ulid") is None


def test_oldest_age_comes_from_the_oldest_message_of_any_priority(
    settings: Settings, redis_client: redis.Redis
) -> None:
    now = time.time()
    old = new_job_id(int((now - 90) * 1000))
    young = new_job_id(int((now - 5) * 1000))
    celery = create_celery(settings)
    send_synthesis(celery, young, "acme", MODEL, Priority.HIGH)
    send_synthesis(celery, old, "acme", MODEL, Priority.LOW)
    celery.close()
    backlog = read_backlog(redis_client, MODEL, now)
    assert (backlog.pending, backlog.queued, backlog.queue) == (0, 2, "synth.piper-joe")
    assert backlog.oldest_age_s is not None and 89 < backlog.oldest_age_s < 91


def test_pending_jobs_count_and_age_and_an_empty_model_has_no_age(
    settings: Settings, redis_client: redis.Redis
) -> None:
    now = time.time()
    first = new_job_id(int((now - 30) * 1000))
    redis_client.lpush("ttsfleet:pending:piper-joe:normal:acme", first)
    redis_client.lpush("ttsfleet:pending:piper-joe:normal:acme", new_job_id(int(now * 1000)))
    redis_client.rpush("ttsfleet:pending:piper-joe:normal", "acme")
    backlog = read_backlog(redis_client, MODEL, now)
    assert (backlog.pending, backlog.queued, backlog.depth) == (2, 0, 2)
    assert backlog.oldest_age_s is not None and 29 < backlog.oldest_age_s < 31
    assert read_backlog(redis_client, "other", now).oldest_age_s is None
    assert message_job_id(b"not json") is None
