"""The API's contract over real HTTP and a real Redis: shapes, isolation, cancel, outages."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import redis

from tasks import keys
from tasks.jobs import JobStatus
from tasks.settings import Settings
from tasks.store import JobStore
from tests.conftest import ApiServer, free_port, wait_until
from tests.engines import HalfSecondEngine
from worker.batcher import DirectSynthesizer
from worker.runner import JobRunner

JOB_FIELDS = {
    "id", "status", "created_at", "started_at", "finished_at", "voice", "format", "sample_rate",
    "priority", "metadata", "loudness_lufs", "attempts", "audio", "error", "callback",
    "progress",
}  # fmt: skip


def test_submit_answers_202_with_the_job_and_its_location(
    api: ApiServer, redis_client: redis.Redis
) -> None:
    with api.client() as http:
        response = http.post(
            "/v1/jobs", json={"text": "Hello.", "metadata": {"order": 7}, "priority": "high"}
        )
    assert response.status_code == 202
    job = response.json()
    assert set(job) == JOB_FIELDS
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert (job["status"], job["voice"], job["sample_rate"], job["format"]) == (
        "queued", "en_US-joe-medium", 22050, "wav",
    )  # fmt: skip
    assert (
        job["metadata"] == {"order": 7} and job["attempts"] == 0 and job["created_at"].endswith("Z")
    )
    # The dispatcher moves it to the model's high-priority list, where one message waits.
    wait_until(lambda: redis_client.llen(keys.synth_queue("piper-joe")) == 1, timeout=5)


def test_requested_sample_rate_is_kept_and_native_rate_filled_in(api: ApiServer) -> None:
    with api.client() as http:
        native = http.post("/v1/jobs", json={"text": "a"}).json()
        chosen = http.post(
            "/v1/jobs", json={"text": "a", "sample_rate": 16000, "format": "mp3"}
        ).json()
    assert native["sample_rate"] == 22050
    assert (chosen["sample_rate"], chosen["format"]) == (16000, "mp3")


def test_tenants_never_see_each_others_jobs(api: ApiServer) -> None:
    with api.client("acme") as acme, api.client("globex") as globex:
        job = acme.post("/v1/jobs", json={"text": "Secret."}).json()
        globex.post("/v1/jobs", json={"text": "Mine."})
        for method, path in (
            ("GET", f"/v1/jobs/{job['id']}"),
            ("POST", f"/v1/jobs/{job['id']}/cancel"),
            ("GET", f"/v1/jobs/{job['id']}/audio"),
        ):
            response = globex.request(method, path)
            assert response.status_code == 404, path
            assert response.json()["error"]["code"] == "not_found"
        listed = globex.get("/v1/jobs").json()["jobs"]
        assert [j["id"] for j in listed] != [] and job["id"] not in {j["id"] for j in listed}
        assert acme.get(f"/v1/jobs/{job['id']}").json()["status"] == "queued"


def test_list_pages_with_cursor_and_filters_by_status(api: ApiServer) -> None:
    with api.client() as http:
        ids = [http.post("/v1/jobs", json={"text": f"Line {i}."}).json()["id"] for i in range(5)]
        http.post(f"/v1/jobs/{ids[2]}/cancel")
        first = http.get("/v1/jobs", params={"limit": 2}).json()
        second = http.get("/v1/jobs", params={"limit": 2, "cursor": first["next_cursor"]}).json()
        third = http.get("/v1/jobs", params={"limit": 2, "cursor": second["next_cursor"]}).json()
        canceled = http.get("/v1/jobs", params={"status": "canceled"}).json()
    pages = [j["id"] for page in (first, second, third) for j in page["jobs"]]
    assert pages == list(reversed(ids)) and third["next_cursor"] is None
    assert [j["id"] for j in canceled["jobs"]] == [ids[2]]


def test_canceled_queued_job_is_never_synthesized(api: ApiServer, settings: Settings) -> None:
    with api.client() as http:
        job = http.post("/v1/jobs", json={"text": "Never say this."}).json()
        canceled = http.post(f"/v1/jobs/{job['id']}/cancel")
        assert canceled.status_code == 200
        assert canceled.json()["status"] == "canceled" and canceled.json()["finished_at"]
        again = http.post(f"/v1/jobs/{job['id']}/cancel")
        assert again.status_code == 409 and again.json()["error"]["code"] == "job_already_terminal"
        audio = http.get(f"/v1/jobs/{job['id']}/audio")
        assert audio.status_code == 409 and audio.json()["error"]["code"] == "job_not_finished"
        # The message is still queued; a worker taking it must not synthesize.
        engine = HalfSecondEngine()
        store = JobStore.from_url(settings.redis_url, settings.job_ttl_s)
        JobRunner(store, api.app_storage(), DirectSynthesizer(engine), 3).run(job["id"])
        assert engine.calls == 0
        final = http.get(f"/v1/jobs/{job['id']}").json()
    assert (final["status"], final["attempts"], final["audio"]) == ("canceled", 0, None)


def test_audio_of_unfinished_job_is_409(api: ApiServer) -> None:
    with api.client() as http:
        job = http.post("/v1/jobs", json={"text": "Not yet."}).json()
        response = http.get(f"/v1/jobs/{job['id']}/audio")
    assert response.status_code == 409 and response.json()["error"]["code"] == "job_not_finished"


def test_redis_down_is_503_with_retry_after(
    start_api: Callable[..., ApiServer], make_settings: Callable[..., Settings]
) -> None:
    api = start_api(make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    with api.client() as http:
        submit = http.post("/v1/jobs", json={"text": "Hello."})
        ready = http.get("/readyz")
        health = http.get("/healthz")
        listing = http.get("/v1/jobs")
    for response in (submit, ready, listing):
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "5"
        assert response.json()["error"]["code"] == "unavailable"
    assert health.status_code == 200


def test_refused_submit_leaves_nothing_behind(
    start_api: Callable[..., ApiServer],
    make_settings: Callable[..., Settings],
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    """Admission is one script: a refusal (here the quota) writes no record, index or
    pending entry."""
    tenants = tmp_path / "tenants.json"
    tenants.write_text(
        '{"tenants": [{"id": "acme", "api_keys": ["key-acme"], "max_queued_jobs": 0}]}'
    )
    api = start_api(make_settings(api_keys=None, tenants_file=tenants), dispatch=False)
    with api.client() as http:
        response = http.post("/v1/jobs", json={"text": "Hello."})
        listing = http.get("/v1/jobs").json()
    assert response.status_code == 429 and response.json()["error"]["code"] == "quota_exceeded"
    assert listing["jobs"] == []
    assert redis_client.keys("ttsfleet:job:*") == []
    assert redis_client.keys("ttsfleet:pending:*") == []


def test_probes_voices_and_docs(api: ApiServer) -> None:
    with api.client(None) as anonymous:
        assert anonymous.get("/healthz").json() == {"status": "ok"}
        assert anonymous.get("/readyz").status_code == 200
        assert anonymous.get("/docs").status_code == 200
        spec = anonymous.get("/openapi.json").json()
        assert anonymous.get("/v1/voices").status_code == 401
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/cancel", "/v1/jobs/{job_id}/audio",
            "/v1/voices"} <= set(spec["paths"])  # fmt: skip
    assert "text" in spec["components"]["schemas"]["JobRequest"]["properties"]
    with api.client() as http:
        voices = http.get("/v1/voices").json()
    assert voices == [
        {
            "id": "en_US-joe-medium",
            "model": "piper-joe",
            "engine": "piper",
            "language": "en_US",
            "sample_rate": 22050,
        }
    ]


def test_metrics_count_requests_and_submissions(api: ApiServer) -> None:
    def sample(text: str, name: str) -> float:
        for line in text.splitlines():
            if line.startswith(name):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    # No per-tenant labels by default: /metrics needs no key (TTSFLEET_METRICS_TENANT_LABELS).
    submitted = 'ttsfleet_jobs_submitted_total{tenant="all",voice="en_US-joe-medium"}'
    requests = 'ttsfleet_http_requests_total{method="POST",route="/v1/jobs",status="202"}'
    before = httpx.get(api.url + "/metrics").text
    with api.client() as http:
        for _ in range(3):
            http.post("/v1/jobs", json={"text": "Count me."})
    after = httpx.get(api.url + "/metrics").text
    assert sample(after, submitted) - sample(before, submitted) == 3
    assert sample(after, requests) - sample(before, requests) == 3
    assert 'ttsfleet_queue_depth{queue="synth.piper-joe"} ' in after
    depth = 'ttsfleet_queue_depth{queue="synth.piper-joe"}'
    wait_until(lambda: sample(httpx.get(api.url + "/metrics").text, depth) >= 3, timeout=5)
    assert 'tenant="acme"' not in after


def test_metrics_show_tenants_only_when_asked(
    start_api: Callable[..., ApiServer],
    make_settings: Callable[..., Settings],
    redis_client: redis.Redis,
) -> None:
    api = start_api(make_settings(metrics_tenant_labels=True), dispatch=False)
    with api.client("globex") as http:
        assert http.post("/v1/jobs", json={"text": "Count me."}).status_code == 202
    text = httpx.get(api.url + "/metrics").text
    assert 'ttsfleet_jobs_submitted_total{tenant="globex",voice="en_US-joe-medium"}' in text
    redis_client.flushall()  # the next test counts pending jobs


def test_metrics_show_the_pending_backlog(
    start_api: Callable[..., ApiServer], settings: Settings
) -> None:
    api = start_api(settings, dispatch=False)
    with api.client("acme") as acme, api.client("globex") as globex:
        acme.post("/v1/jobs/batch", json={"jobs": [{"text": "a", "priority": "low"}] * 4})
        globex.post("/v1/jobs", json={"text": "b"})
    assert 'ttsfleet_pending_jobs{model="piper-joe"} 5.0' in httpx.get(api.url + "/metrics").text


def test_job_status_values_are_the_documented_ones() -> None:
    assert [s.value for s in JobStatus] == ["queued", "running", "succeeded", "failed", "canceled"]
