"""A worker's heartbeat hash on a real Redis: its fields, its rate over the window, its
TTL, and that `ttsfleet fleet` reads it and forgets expired workers."""

from __future__ import annotations

import pytest
import redis

from fleet.view import read_workers
from worker import heartbeat, metrics
from worker.heartbeat import Heartbeat


def test_heartbeat_reports_jobs_per_second_and_fleet_reads_it(redis_client: redis.Redis) -> None:
    clock = [1000.0]
    done = [0]
    beat = Heartbeat(
        redis_client,
        "m-cpu@h",
        {"node": "m-cpu@h", "model": "m", "device": "cpu", "queue": "synth.m", "pid": 7},
        counts=lambda: (done[0], 2),
        interval_s=5.0,
        clock=lambda: clock[0],
    )
    beat.beat()
    clock[0] += 10
    done[0] = 25
    beat.beat()
    fields = redis_client.hgetall("ttsfleet:worker:m-cpu@h")
    assert fields["jobs_per_s"] == "2.5" and fields["in_flight"] == "2"
    assert 0 < redis_client.ttl("ttsfleet:worker:m-cpu@h") <= 15
    (view,) = read_workers(redis_client, now=1012.0)
    assert (view.node, view.model, view.jobs_done, view.last_beat_s) == ("m-cpu@h", "m", 25, 2.0)

    redis_client.delete("ttsfleet:worker:m-cpu@h")  # as if its TTL ran out
    assert read_workers(redis_client) == []
    assert redis_client.zcard("ttsfleet:workers") == 0


def test_a_recycle_counts_on_the_nodes_hash(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = redis_client.connection_pool.connection_kwargs
    monkeypatch.setattr(heartbeat, "_node", "m-cpu@h")
    monkeypatch.setattr(heartbeat, "_redis_url", f"redis://{url['host']}:{url['port']}/0")
    redis_client.hset("ttsfleet:worker:m-cpu@h", "model", "m")
    redis_client.expire("ttsfleet:worker:m-cpu@h", 15)
    metrics.record_recycle("max_jobs")
    metrics.record_recycle("max_jobs")
    assert redis_client.hget("ttsfleet:worker:m-cpu@h", "recycles") == "2"
    assert 0 < redis_client.ttl("ttsfleet:worker:m-cpu@h") <= 15
