"""Operating the fleet through real parts: the worker's and the API's Prometheus endpoints
move as jobs run through a real worker, the worker (and the API) log JSON lines that name
the job,
`ttsfleet fleet --json` lists the worker and its queue, and `ttsfleet fleet drain` takes a
worker out while a job submitted afterwards waits for the next one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tasks.backlog import read_backlog
from tasks.settings import Settings
from tests.conftest import (
    API_KEYS,
    ROOT,
    ApiServer,
    DispatcherThread,
    RedisServer,
    WorkerProcess,
    free_port,
    settings_env,
    wait_until,
)
from tests.helpers.jobs import wait_terminal
from tests.helpers.speech import SENTENCE

MODEL = "piper-joe"
QUEUE = "synth.piper-joe"


@contextmanager
def dispatching(settings: Settings) -> Iterator[None]:
    """A dispatcher for the duration: the module's API runs without one, so jobs wait
    pending until a test chooses to let them go."""
    dispatcher = DispatcherThread(settings)
    dispatcher.start()
    try:
        yield
    finally:
        dispatcher.stop()


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a /metrics page: (name, labels) → value."""
    text = httpx.get(url, timeout=10).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 when there are none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def fleet_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleet", "fleet", *args],
        # A terminal's default width: the node names must still be whole (fleet.view.Workers).
        cwd=ROOT, env={**settings_env(settings), "COLUMNS": "80"}, capture_output=True,
        text=True, timeout=90,
    )  # fmt: skip


def heartbeat_node(client: redis.Redis) -> str:
    """The worker's node once its heartbeat says it holds nothing: a job an earlier test
    waited for can still count as in flight until the next beat (0.5 s here)."""

    def node() -> str | None:
        nodes = client.zrange("ttsfleet:workers", 0, -1)
        if not nodes:
            return None
        held = client.hget(f"ttsfleet:worker:{nodes[0]}", "in_flight")
        return str(nodes[0]) if held == "0" else None

    found: str = wait_until(node, timeout=30, interval=0.1)
    return found


def ops_settings(redis_server: RedisServer, tmp: Path, db: int) -> Settings:
    return Settings(
        # A database of its own: other modules' workers must not take these jobs.
        redis_url=redis_server.url.rsplit("/", 1)[0] + f"/{db}",
        storage_url="file://" + str(tmp / "audio"),
        api_keys=",".join(f"{t}:{k}" for t, k in API_KEYS.items()),
        home=tmp / "home",
        log_format="json",
        worker_heartbeat_s=0.5,
        result_cache=False,
    )


@pytest.fixture(scope="module")
def ops_fleet(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ApiServer, WorkerProcess, str]]:
    """The API without its dispatcher (the test moves jobs when it wants to) and one worker
    with JSON logs and a metrics port."""
    tmp = tmp_path_factory.mktemp("operating")
    settings = ops_settings(redis_server, tmp, db=3)
    redis.Redis.from_url(settings.redis_url).flushdb()
    api = ApiServer(settings, dispatch=False)
    api.start()
    port = free_port()
    worker = WorkerProcess(
        settings, tmp / "worker.log", concurrency=1, extra=["--metrics-port", str(port)]
    )
    try:
        worker.wait_ready()
        yield api, worker, f"http://127.0.0.1:{port}/metrics"
    finally:
        worker.stop()
        api.stop()


def test_metrics_of_api_and_worker_move_as_jobs_run(
    ops_fleet: tuple[ApiServer, WorkerProcess, str],
) -> None:
    api, _, worker_metrics = ops_fleet
    before = scrape(worker_metrics)
    assert value(before, "ttsfleet_jobs_in_flight", queue=QUEUE) == 0
    with api.client() as http:
        good = http.post("/v1/jobs", json={"text": SENTENCE}).json()
        bad = http.post("/v1/jobs", json={"text": "?!"}).json()
        waiting = scrape(api.url + "/metrics")
        assert value(waiting, "ttsfleet_pending_jobs", model=MODEL) == 2
        assert value(waiting, "ttsfleet_queue_oldest_age_seconds", queue=QUEUE) > 0
        with dispatching(api.settings):
            assert wait_terminal(http, good["id"])["status"] == "succeeded"
            assert wait_terminal(http, bad["id"])["status"] == "failed"
    drained = scrape(api.url + "/metrics")
    assert value(drained, "ttsfleet_pending_jobs", model=MODEL) == 0
    assert value(drained, "ttsfleet_queue_depth", queue=QUEUE) == 0
    assert value(drained, "ttsfleet_queue_oldest_age_seconds", queue=QUEUE) == 0

    after = scrape(worker_metrics)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    voice = "en_US-joe-medium"
    assert grew("ttsfleet_jobs_finished_total", model=MODEL, voice=voice, status="succeeded") == 1
    assert grew("ttsfleet_jobs_finished_total", model=MODEL, status="failed") == 1
    assert grew("ttsfleet_jobs_failed_total", model=MODEL, code="invalid_text") == 1
    assert grew("ttsfleet_batch_size_count", model=MODEL) >= 1
    assert grew("ttsfleet_engine_seconds_sum", model=MODEL) > 0
    assert grew("ttsfleet_audio_seconds_total", model=MODEL) > 1
    assert grew("ttsfleet_realtime_factor_count", model=MODEL) >= 1
    assert value(after, "ttsfleet_jobs_in_flight", queue=QUEUE) == 0


def test_worker_logs_json_lines_that_name_the_job(
    ops_fleet: tuple[ApiServer, WorkerProcess, str],
) -> None:
    api, worker, _ = ops_fleet
    with api.client() as http:
        job = http.post("/v1/jobs", json={"text": "Logs should name me."}).json()
        with dispatching(api.settings):
            assert wait_terminal(http, job["id"])["status"] == "succeeded"

    def job_lines() -> list[dict[str, Any]]:
        # Celery prints a few lines past logging (a warm shutdown's notice); the rest is JSON.
        text = worker.log.read_text().splitlines()
        lines = [json.loads(line) for line in text if line.startswith("{")]
        return [line for line in lines if line.get("job_id") == job["id"]]

    # The job's lines include Celery's "received" and "succeeded" and the task's own.
    done = f"job {job['id']}: succeeded"
    mine = wait_until(lambda: [x for x in job_lines() if x["message"] == done] and job_lines())
    assert any("received" in line["message"] for line in mine)
    assert all(line["tenant"] == "acme" for line in mine if "tenant" in line)
    assert any(line.get("tenant") == "acme" and line["level"] == "INFO" for line in mine)
    assert all(line["worker"].startswith("piper-joe-cpu@") for line in mine)


def test_fleet_json_lists_the_worker_and_its_queue(
    ops_fleet: tuple[ApiServer, WorkerProcess, str],
) -> None:
    api, _, _ = ops_fleet
    client = redis.Redis.from_url(api.settings.redis_url, decode_responses=True)
    node = heartbeat_node(client)
    with api.client() as http:
        http.post("/v1/jobs", json={"text": SENTENCE}).raise_for_status()
    result = fleet_cli(api.settings, "--json", "--drain", "5m")
    assert result.returncode == 0, result.stderr
    view = json.loads(result.stdout)
    (worker,) = view["workers"]
    assert worker["node"] == node and worker["model"] == MODEL and worker["device"] == "cpu"
    (queue,) = view["queues"]
    assert queue["queue"] == QUEUE and queue["pending"] == 1 and queue["oldest_age_s"] > 0
    (model,) = view["models"]
    assert model["model"] == MODEL and model["backlog"] == 1 and model["drain_s"] == 300
    screen = fleet_cli(api.settings)
    assert screen.returncode == 0 and node in screen.stdout and QUEUE in screen.stdout
    client.close()


def test_counters_outlive_a_killed_prefork_child(
    ops_fleet: tuple[ApiServer, WorkerProcess, str],
) -> None:
    """The child that ran the jobs dies; its samples stay in the worker's directory and the
    scrape still adds them up, and its replacement's jobs add to them."""
    api, worker, worker_metrics = ops_fleet
    finished = "ttsfleet_jobs_finished_total"
    before = value(scrape(worker_metrics), finished, model=MODEL)
    assert before > 0  # the earlier tests of this module ran jobs here
    (child,) = Path(f"/proc/{worker.proc.pid}/task/{worker.proc.pid}/children").read_text().split()
    loaded = worker.log.read_text().count("loaded on")
    os.kill(int(child), signal.SIGKILL)
    wait_until(lambda: worker.log.read_text().count("loaded on") > loaded, timeout=60)
    assert value(scrape(worker_metrics), finished, model=MODEL) == before
    with api.client() as http:
        job = http.post("/v1/jobs", json={"text": SENTENCE}).json()
        with dispatching(api.settings):
            assert wait_terminal(http, job["id"])["status"] == "succeeded"
    # (Plus the job the fleet test left pending, which this dispatcher also moves.)
    assert value(scrape(worker_metrics), finished, model=MODEL) >= before + 1


def test_drain_stops_the_worker_and_a_later_job_waits_for_the_next_one(
    redis_server: RedisServer,
    tmp_path: Path,
    start_api: Callable[..., ApiServer],
    start_worker: Callable[..., WorkerProcess],
) -> None:
    settings = ops_settings(redis_server, tmp_path, db=4)
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    client.flushdb()
    api = start_api(settings)
    first = start_worker(settings, extra=["--metrics-port", str(free_port())])
    node = heartbeat_node(client)
    assert len(list(settings.home.glob("prometheus-worker-*"))) == 1

    result = fleet_cli(settings, "drain", node)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no longer consuming" in result.stdout
    assert first.proc.wait(60) == 0
    assert not client.exists(f"ttsfleet:worker:{node}")
    assert not list(settings.home.glob("prometheus-worker-*"))  # removed at exit

    with api.client() as http:
        job = http.post("/v1/jobs", json={"text": SENTENCE}).json()
        # The dispatcher moves it to the Celery queue, where nobody takes it.
        wait_until(lambda: read_backlog(client, MODEL).queued == 1)
        assert http.get(f"/v1/jobs/{job['id']}").json()["status"] == "queued"
        start_worker(settings)
        assert wait_terminal(http, job["id"])["status"] == "succeeded"
    client.close()


def test_api_processes_log_json_lines(redis_server: RedisServer, tmp_path: Path) -> None:
    """`ttsfleet api --workers 2` with JSON logs: uvicorn's lines from both spawned processes
    come out as JSON objects."""
    settings = ops_settings(redis_server, tmp_path, db=5)
    port = free_port()
    log = tmp_path / "api.log"
    with open(log, "wb") as out:
        api = subprocess.Popen(
            [sys.executable, "-m", "fleet", "api", "--port", str(port), "--workers", "2"],
            # A key strong enough that no weak-secret warning joins uvicorn's lines.
            cwd=ROOT, env={**settings_env(settings), "TTSFLEET_API_KEYS": "acme:" + "k" * 24},
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200)
        wait_until(lambda: log.read_text().count("Application startup complete") == 2)
    finally:
        api.send_signal(signal.SIGTERM)
        api.wait(30)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert len({line["pid"] for line in lines if "startup complete" in line["message"]}) == 2
    assert all(line["level"] and line["logger"].startswith("uvicorn") for line in lines)
