"""A fleet per fault test: its own Redis database, the API with the dispatcher (and so the
reconciler) in a thread, file storage, and `ttsfleet worker` subprocesses serving one of
the tiny engines of tests/engines.py."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tasks import keys
from tasks.settings import ModelSpec, Settings, VoiceSpec
from tests.conftest import API_KEYS, ApiServer, RedisServer, WorkerProcess, wait_until

MODEL = "fault"
VOICE = "tone"
TERMINAL = ("succeeded", "failed", "canceled")
HOOK = "http://127.0.0.1:9/hook"


@dataclass
class Fleet:
    settings: Settings
    api: ApiServer
    tmp: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    def start_worker(self, concurrency: int = 1, ready: bool = True) -> WorkerProcess:
        worker = WorkerProcess(
            self.settings, self.tmp / f"worker-{len(self.workers)}.log", concurrency=concurrency
        )
        self.workers.append(worker)
        if ready:
            worker.wait_ready()
        return worker

    def submit(self, http: httpx.Client, texts: list[str]) -> list[str]:
        # Every job asks for a callback, so its terminal events land in the outbox, where
        # `callback_events` counts them (no receiver runs: they just wait there).
        body = {"jobs": [{"text": t, "voice": VOICE, "callback_url": HOOK} for t in texts]}
        response = http.post("/v1/jobs/batch", json=body)
        assert response.status_code == 202, response.text
        return [job["id"] for job in response.json()["jobs"]]

    def jobs(self, http: httpx.Client, ids: list[str]) -> list[dict[str, Any]]:
        return [http.get(f"/v1/jobs/{job_id}").json() for job_id in ids]

    def wait_all_terminal(
        self, http: httpx.Client, ids: list[str], timeout: float = 90
    ) -> list[dict[str, Any]]:
        def done() -> list[dict[str, Any]] | None:
            jobs = self.jobs(http, ids)
            return jobs if all(j["status"] in TERMINAL for j in jobs) else None

        result: list[dict[str, Any]] = wait_until(done, timeout=timeout, interval=0.2)
        return result

    def objects(self) -> list[Path]:
        root = self.tmp / "audio"
        return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))

    def callback_events(self, job_id: str) -> list[str]:
        """The terminal events the store recorded for this job (one webhook-id each)."""
        client = redis.Redis.from_url(self.settings.redis_url, decode_responses=True)
        found = sorted(
            k.rsplit(":", 1)[1]
            for k in client.scan_iter(keys.callback_event_key(f"msg_{job_id}_*"))
        )
        client.close()
        return found

    def success_lines(self, job_id: str) -> int:
        """How many times a worker recorded this job's success (a terminal event each)."""
        needle = f"job {job_id} succeeded"
        return sum(w.log.read_text().count(needle) for w in self.workers)


def check_exactly_once(fleet: Fleet, jobs: list[dict[str, object]]) -> dict[str, int]:
    statuses = [j["status"] for j in jobs]
    assert statuses == ["succeeded"] * len(jobs), statuses
    ids = [str(j["id"]) for j in jobs]
    assert len(fleet.objects()) == len(jobs)
    events = {job_id: fleet.success_lines(job_id) for job_id in ids}
    assert set(events.values()) == {1}, events
    # One terminal callback event per job, whatever was killed: its webhook-id is stable.
    for job_id in ids:
        assert fleet.callback_events(job_id) == [f"msg_{job_id}_succeeded"]
    attempts = [int(str(j["attempts"])) for j in jobs]
    assert all(a >= 1 for a in attempts)
    return {
        "jobs": len(jobs),
        "lost": 0,
        "duplicate_terminal_events": sum(events.values()) - len(jobs),
        "deliveries": sum(attempts),
    }


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def signed_tenants(tmp_path: Path) -> Path:
    """The test tenants (API_KEYS) with a webhook secret each."""
    path = tmp_path / "tenants.json"
    secret = "whsec_" + base64.b64encode(b"w" * 32).decode()
    tenants = [{"id": t, "api_keys": [k], "webhook_secret": secret} for t, k in API_KEYS.items()]
    path.write_text(json.dumps({"tenants": tenants}))
    return path


@pytest.fixture
def make_fleet(redis_server: RedisServer, tmp_path: Path) -> Iterator[Callable[..., Fleet]]:
    fleets: list[Fleet] = []

    def make(engine: str, db: int = 5, **overrides: Any) -> Fleet:
        url = redis_server.url.rsplit("/", 1)[0] + f"/{db}"
        redis.Redis.from_url(url).flushdb()
        values: dict[str, Any] = {
            "redis_url": url,
            "storage_url": "file://" + str(tmp_path / "audio"),
            # Jobs here ask for callbacks, which need a signing secret: a tenants file.
            "tenants_file": signed_tenants(tmp_path),
            "dev_mode": True,
            "home": tmp_path / "home",
            "models": {
                MODEL: ModelSpec(
                    engine=f"tests.engines:{engine}",
                    options=overrides.pop("options", {}),
                    voices={VOICE: VoiceSpec(language="en", sample_rate=16000)},
                )
            },
            "result_cache": False,
            "job_lease_s": 1.0,
            "reconcile_interval_s": 0.25,
            "rate_limit_per_s": 0,
            # The tests poll every job of a run at once (hundreds per pass): no read limit.
            "read_rate_limit_per_s": 0,
            "callback_allowed_networks": "127.0.0.0/8",
        }
        values.update(overrides)
        settings = Settings(**values)
        api = ApiServer(settings)
        api.start()
        fleet = Fleet(settings, api, tmp_path)
        fleets.append(fleet)
        return fleet

    yield make
    for fleet in fleets:
        for worker in fleet.workers:
            worker.stop()
        fleet.api.stop()


def elapsed(since: float) -> float:
    return round(time.monotonic() - since, 2)
