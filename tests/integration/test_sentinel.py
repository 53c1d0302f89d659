"""`TTSFLEET_REDIS_URL=sentinel://...` (DESIGN §2): a real master, its replica and a Redis
Sentinel watching them (redis-server in sentinel mode); the store follows a failover, and a
whole fleet (API, dispatcher, Celery worker) runs a job through the sentinel."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tasks import redis_url
from tasks.settings import ModelSpec, VoiceSpec
from tasks.store import JobStore
from tests.conftest import RedisServer, fleet_settings, free_port, serving, wait_until
from tests.helpers.jobs import make_job, wait_terminal

MASTER = "ttsfleet"


@dataclass
class SentinelGroup:
    """A master, its replica and one sentinel, each a redis-server on a free port."""

    ports: list[int]  # master, replica
    sentinel_port: int
    procs: list[subprocess.Popen[bytes]]

    @property
    def url(self) -> str:
        return f"sentinel://127.0.0.1:{self.sentinel_port}/0?master={MASTER}"

    def sentinel(self) -> redis.Redis:
        return redis.Redis(port=self.sentinel_port, decode_responses=True)

    def master_port(self) -> int:
        return int(self.sentinel().sentinel_get_master_addr_by_name(MASTER)[1])


@pytest.fixture
def sentinel_group(tmp_path: Path) -> Iterator[SentinelGroup]:
    binary = shutil.which("redis-server")
    assert binary is not None, "make test installs redis-server"
    master, replica, watcher = free_port(), free_port(), free_port()
    procs = []
    for port, more in ((master, []), (replica, ["--replicaof", "127.0.0.1", str(master)])):
        procs.append(subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--dir", str(tmp_path), "--dbfilename", f"{port}.rdb", *more],
            stdout=subprocess.DEVNULL,
        ))  # fmt: skip
    conf = tmp_path / "sentinel.conf"  # the sentinel rewrites it as it learns
    conf.write_text(
        f"port {watcher}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor {MASTER} 127.0.0.1 {master} 1\n"
        f"sentinel down-after-milliseconds {MASTER} 1000\n"
        f"sentinel failover-timeout {MASTER} 10000\n"
    )
    procs.append(subprocess.Popen([binary, str(conf), "--sentinel"], stdout=subprocess.DEVNULL))
    group = SentinelGroup([master, replica], watcher, procs)
    try:
        wait_until(lambda: group.sentinel().ping(), timeout=10)
        # The sentinel knows the replica (from the master's INFO) before a failover can pick it.
        wait_until(lambda: group.sentinel().sentinel_slaves(MASTER), timeout=20, interval=0.2)
        yield group
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


def test_a_sentinel_url_names_its_sentinels_master_and_database() -> None:
    target = redis_url.sentinel_target(
        "sentinel://:p%40ss@10.0.0.1:26380,10.0.0.2,[::1]:7/3?master=tts&sentinel_password=s"
    )
    assert target == redis_url.SentinelTarget(
        sentinels=[("10.0.0.1", 26380), ("10.0.0.2", 26379), ("::1", 7)],
        master="tts", db=3, password="p@ss", sentinel_password="s",
    )  # fmt: skip
    assert redis_url.sentinel_target("redis://127.0.0.1:6379/0") is None
    with pytest.raises(ValueError, match="master=NAME"):
        redis_url.sentinel_target("sentinel://10.0.0.1:26379/0")
    # Celery's broker: kombu's own form of it, the master's name as a transport option.
    assert redis_url.broker("sentinel://:pw@a:1,b:2/4?master=m") == (
        "sentinel://:pw@a:1/4;sentinel://:pw@b:2/4",
        {"master_name": "m"},
    )
    assert redis_url.broker("redis://x:6379/0") == ("redis://x:6379/0", {})


def test_the_store_follows_the_master_through_a_failover(sentinel_group: SentinelGroup) -> None:
    store = JobStore.from_url(sentinel_group.url, 3600)
    before = make_job()
    store.create(before)
    first = sentinel_group.master_port()
    replica = redis.Redis(port=next(p for p in sentinel_group.ports if p != first))
    wait_until(lambda: replica.exists(f"ttsfleet:job:{before.id}"), timeout=10)

    # NOGOODSLAVE until the sentinel has heard the replica report a healthy link: ask again.
    failover = sentinel_group.sentinel().execute_command
    wait_until(lambda: failover("SENTINEL", "FAILOVER", MASTER), timeout=30, interval=0.5)
    wait_until(lambda: sentinel_group.master_port() != first, timeout=30, interval=0.2)
    wait_until(lambda: replica.info("replication")["role"] == "master", timeout=30)
    # Once the old master is a replica, the store's open connections to it are refused
    # writes (READONLY): it must ask the sentinel again, not fail or write there.
    demoted = redis.Redis(port=first)
    wait_until(lambda: demoted.info("replication")["role"] == "slave", timeout=30, interval=0.2)

    # Written after the failover: it lands on the new master, through the same store.
    after = make_job()
    store.create(after)
    assert replica.exists(f"ttsfleet:job:{after.id}")
    found = store.get(before.id)
    assert found is not None and found.id == before.id


def test_a_fleet_on_sentinel_runs_a_job(
    sentinel_group: SentinelGroup, redis_server: RedisServer, tmp_path: Path
) -> None:
    """The API's pools, the dispatcher, the Celery broker and the worker all find the
    master through the sentinel."""
    settings = fleet_settings(
        redis_server, tmp_path, redis_url=sentinel_group.url, result_cache=False,
        models={"m": ModelSpec(engine="tests.engines:ToneEngine",
                               voices={"tone": VoiceSpec(language="en", sample_rate=16000)})},
    )  # fmt: skip
    with serving(settings, tmp_path / "worker.log") as (api, _), api.client() as http:
        response = http.post("/v1/jobs", json={"text": "Through the sentinel.", "voice": "tone"})
        assert response.status_code == 202, response.text
        job = wait_terminal(http, response.json()["id"])
        assert job["status"] == "succeeded", job
        assert http.get(f"/v1/jobs/{job['id']}/audio").status_code == 200
    master = redis.Redis(port=sentinel_group.master_port())
    assert master.exists(f"ttsfleet:job:{job['id']}")
