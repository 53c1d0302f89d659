"""`make test-deploy`: docker-compose.yml runs for real, every role in its own container
(CPU profile; Redis and S3 stand-ins from tests/deploy/live/compose.test.yml), and is
driven from the host through the published ports only.

The tests share one fleet and run in file order: health first, then jobs with callbacks
and downloads, one worker against two, faults, and `down` last.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Iterator

import httpx
import pytest
import soundfile

from client.webhooks import verify_webhook
from tests.conftest import TEST_OUTPUT
from tests.deploy.live.fleet import (
    DOCKER,
    PROJECT,
    TENANT,
    Fleet,
    Receiver,
    leftovers,
    run,
    wait_for,
)

pytestmark = pytest.mark.deploy

# Distinct texts: identical requests would be answered from the result cache.
SENTENCE = "Callback job number {n} is done."
PARAGRAPH = (
    "Request number {n} asks the fleet for a short paragraph of speech, long enough that "
    "synthesis, not the queue, takes most of the time a job spends in the system."
)
RESULTS = TEST_OUTPUT / "deploy.json"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    fleet = Fleet.prepare(tmp_path_factory.mktemp("deploy"))
    fleet.compose("down", "-v", "--remove-orphans")  # what a crashed run left
    try:
        fleet.compose("up", "-d", "--no-build", "--scale", "worker-cpu=1", timeout=1200)
        yield fleet
    finally:
        fleet.compose("down", "-v", "--remove-orphans")


@pytest.fixture(scope="module")
def receiver(fleet: Fleet) -> Iterator[Receiver]:
    receiver = Receiver(fleet.gateway)
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def api(fleet: Fleet) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {fleet.api_key}"}
    with httpx.Client(base_url=fleet.api_url, headers=headers, timeout=30) as client:
        yield client


def record(name: str, value: object) -> None:
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results[name] = value
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


def submit(
    api: httpx.Client, n: int, callback_url: str | None = None, text: str = PARAGRAPH
) -> str:
    body: dict[str, object] = {"text": text.format(n=n), "format": "wav"}
    if callback_url:
        body["callback_url"] = callback_url
    response = api.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def wait_terminal(
    api: httpx.Client, ids: list[str], timeout: float
) -> dict[str, dict[str, object]]:
    """Every job's record once all are terminal; tolerates the API being briefly away."""
    done: dict[str, dict[str, object]] = {}

    def all_done() -> bool:
        for job_id in [i for i in ids if i not in done]:
            try:
                response = api.get(f"/v1/jobs/{job_id}")
            except httpx.TransportError:
                return False
            if response.status_code != 200:
                return False
            job = response.json()
            if job["status"] in ("succeeded", "failed", "canceled"):
                done[job_id] = job
        return len(done) == len(ids)

    wait_for(all_done, timeout, lambda: f"{len(ids) - len(done)} of {len(ids)} jobs not done")
    return done


def throughput(api: httpx.Client, first: int, count: int) -> float:
    start = time.monotonic()
    ids = [submit(api, first + i) for i in range(count)]
    jobs = wait_terminal(api, ids, timeout=600)
    elapsed = time.monotonic() - start
    assert {job["status"] for job in jobs.values()} == {"succeeded"}
    return count / elapsed


def test_every_service_reports_healthy(fleet: Fleet) -> None:
    states = fleet.wait_healthy(timeout=300)
    services = sorted(
        c["Config"]["Labels"]["com.docker.compose.service"] for c in fleet.containers()
    )
    assert services == [
        "api", "callbacks", "dispatcher", "dispatcher", "flower", "minio", "minio-init",
        "redis", "worker-cpu",
    ], states  # fmt: skip
    print(json.dumps(states, indent=2))


def test_fifty_jobs_call_back_and_their_audio_downloads(
    fleet: Fleet, api: httpx.Client, receiver: Receiver
) -> None:
    ids = [submit(api, n, receiver.url, SENTENCE) for n in range(50)]
    jobs = wait_terminal(api, ids, timeout=600)
    assert {job_id for job_id, job in jobs.items() if job["status"] != "succeeded"} == set()

    wait_for(lambda: set(ids) <= set(receiver.events()), 120, lambda: "callbacks missing")
    for delivery in receiver.deliveries:
        # As the receiver checked it on arrival (the timestamp is within 5 min of then).
        verify_webhook(fleet.webhook_secret, delivery.headers, delivery.body, now=delivery.at)
    events = receiver.events()
    assert all(len(events[job_id]) == 1 for job_id in ids), "a second terminal event"
    assert {kind for job_id in ids for _, kind in events[job_id]} == {"job.succeeded"}

    public = fleet.env["S3_PUBLIC_URL"]
    with httpx.Client(timeout=30) as anonymous:
        for job_id in ids:
            redirect = api.get(f"/v1/jobs/{job_id}/audio")
            assert redirect.status_code == 307, redirect.text
            location = redirect.headers["location"]
            assert location.startswith(f"{public}/{fleet.env['S3_BUCKET']}/audio/{TENANT}/")
            audio = anonymous.get(location)
            assert audio.status_code == 200
            info = soundfile.info(io.BytesIO(audio.content))
            assert info.format == "WAV" and info.samplerate == 22050 and info.duration > 1


def test_two_cpu_workers_beat_one(fleet: Fleet, api: httpx.Client) -> None:
    count = 24
    assert len(fleet.containers("worker-cpu", every=False)) == 1
    load_one = os.getloadavg()[0]
    one = throughput(api, 1000, count)
    fleet.compose("up", "-d", "--no-build", "--no-recreate", "--scale", "worker-cpu=2")
    fleet.wait_healthy(timeout=300)
    assert len(fleet.containers("worker-cpu", every=False)) == 2
    # The new worker's first jobs pay for its warm-up; the 50 jobs before warmed the first.
    throughput(api, 1500, 4)
    load_two = os.getloadavg()[0]
    two = throughput(api, 2000, count)
    print(f"\n{count} jobs, one synthesis process per container: 1 worker {one:.2f} jobs/s "
          f"(host load {load_one:.1f}), 2 workers {two:.2f} jobs/s (host load {load_two:.1f}): "
          f"{two / one:.2f}x")  # fmt: skip
    record("throughput", {"jobs": count, "one_worker_jobs_s": round(one, 3),
                          "two_workers_jobs_s": round(two, 3), "gain": round(two / one, 3),
                          "host_load": [round(load_one, 1), round(load_two, 1)]})  # fmt: skip
    assert two > 1.3 * one


def test_killed_worker_and_restarted_redis_lose_no_job(
    fleet: Fleet, api: httpx.Client, receiver: Receiver
) -> None:
    workers = fleet.containers("worker-cpu", every=False)
    assert len(workers) == 2
    [redis] = fleet.containers("redis")
    ids = [submit(api, 3000 + n, receiver.url, SENTENCE) for n in range(40)]

    def finished() -> int:
        return sum(1 for job_id in ids if job_id in receiver.events())

    # Mid-batch: some jobs done, most still queued or running.
    wait_for(lambda: finished() >= 4, 300, lambda: f"{finished()} jobs done")
    run([DOCKER, "kill", workers[0]["Id"]])
    wait_for(lambda: finished() >= 10, 300, lambda: f"{finished()} jobs done after the kill")
    run([DOCKER, "restart", "--time", "10", redis["Id"]])
    done_at_restart = finished()

    jobs = wait_terminal(api, ids, timeout=600)
    assert {job_id for job_id, job in jobs.items() if job["status"] != "succeeded"} == set()
    wait_for(lambda: set(ids) <= set(receiver.events()), 180, lambda: "callbacks missing")
    events = receiver.events()
    doubled = {job_id: events[job_id] for job_id in ids if len(events[job_id]) != 1}
    assert doubled == {}
    record("faults", {"jobs": len(ids), "done_before_redis_restart": done_at_restart,
                      "deliveries": len(receiver.deliveries)})  # fmt: skip


def test_down_leaves_no_container_network_volume_or_process(fleet: Fleet) -> None:
    ids = [c["Id"] for c in fleet.containers()]
    ports = [fleet.env[name].rpartition(":")[2] for name in
             ("API_PORT", "FLOWER_PORT", "MINIO_PORT", "MINIO_CONSOLE_PORT")]  # fmt: skip
    assert ids
    fleet.compose("down", "-v", "--remove-orphans")
    label = f"label=com.docker.compose.project={PROJECT}"
    assert run([DOCKER, "ps", "-aq", "--filter", label]).split() == []
    assert run([DOCKER, "network", "ls", "-q", "--filter", label]).split() == []
    assert run([DOCKER, "volume", "ls", "-q", "--filter", label]).split() == []
    assert leftovers(ids, ports) == []
    with pytest.raises(httpx.TransportError):
        httpx.get(fleet.api_url + "/healthz", timeout=3)
