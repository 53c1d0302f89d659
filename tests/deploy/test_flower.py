"""Flower as deployed (`celery -A tasks flower` with basic auth from FLOWER_BASIC_AUTH),
against the test Redis, a real synth worker and the real API: it lists the worker and
shows a finished job's task. Its health check: tests/integration/test_health.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tasks.settings import Settings
from tests.conftest import (
    ROOT,
    ApiServer,
    RedisServer,
    WorkerProcess,
    fleet_settings,
    free_port,
    settings_env,
    wait_until,
)

BASIC_AUTH = ("ops", "flower-test-password")


@dataclass
class Fleet:
    api: ApiServer
    settings: Settings
    flower_url: str


def start_flower(settings: Settings, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**settings_env(settings), "FLOWER_BASIC_AUTH": ":".join(BASIC_AUTH)}
    args = [
        sys.executable, "-m", "celery", "-A", "tasks", "flower",
        "--address=127.0.0.1", f"--port={port}",
    ]  # fmt: skip
    with open(log, "wb") as out:
        return subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def fleet(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("flower")
    settings = fleet_settings(redis_server, tmp)
    port = free_port()
    flower = start_flower(settings, port, tmp / "flower.log")
    api = ApiServer(settings)
    api.start()
    worker = WorkerProcess(settings, tmp / "worker.log", concurrency=1)
    try:
        worker.wait_ready()
        url = f"http://127.0.0.1:{port}"

        def flower_up() -> bool:
            if flower.poll() is not None:
                raise AssertionError((tmp / "flower.log").read_text()[-3000:])
            return httpx.get(url + "/healthcheck", timeout=2).text == "OK"

        wait_until(flower_up, timeout=30, interval=0.2)
        yield Fleet(api, settings, url)
    finally:
        worker.stop()
        api.stop()
        stop(flower)


def flower_get(fleet: Fleet, path: str) -> httpx.Response:
    return httpx.get(fleet.flower_url + path, auth=BASIC_AUTH, timeout=15)


def test_flower_refuses_requests_without_basic_auth(fleet: Fleet) -> None:
    assert httpx.get(fleet.flower_url + "/api/workers", timeout=5).status_code == 401
    wrong = httpx.get(fleet.flower_url + "/api/workers", auth=("ops", "nope"), timeout=5)
    assert wrong.status_code == 401


def test_flower_lists_the_synth_worker(fleet: Fleet) -> None:
    def synth_nodes() -> list[str]:
        workers = flower_get(fleet, "/api/workers?refresh=1").json()
        return [node for node in workers if node.startswith("piper-joe-cpu@")]

    assert wait_until(synth_nodes, timeout=30, interval=0.5)


def test_flower_shows_a_finished_job_as_a_successful_task(fleet: Fleet) -> None:
    # Flower only knows tasks from the events it receives: make sure it is listening.
    wait_until(lambda: flower_get(fleet, "/api/workers").json(), timeout=30, interval=0.5)
    with fleet.api.client() as http:
        job = http.post("/v1/jobs", json={"text": "Flower should see this job."}).json()

        def finished() -> bool:
            return http.get(f"/v1/jobs/{job['id']}").json()["status"] == "succeeded"

        wait_until(finished, timeout=60, interval=0.1)

    def task_state() -> str | None:
        tasks = flower_get(fleet, "/api/tasks").json()
        task = tasks.get(job["id"])  # the Celery task id is the job id
        return task["state"] if task and task["state"] == "SUCCESS" else None

    assert wait_until(task_state, timeout=20, interval=0.2) == "SUCCESS"
    task = flower_get(fleet, f"/api/task/info/{job['id']}").json()
    assert task["name"] == "ttsfleet.synthesize"
    assert task["worker"].startswith("piper-joe-cpu@")
