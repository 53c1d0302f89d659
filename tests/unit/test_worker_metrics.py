"""The worker's metrics as the task and the engine record them (in-memory registry here;
the multiprocess endpoint is exercised by tests/integration/test_operating.py)."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from tasks.jobs import JobStatus
from tests.engines import HalfSecondEngine
from worker import metrics
from worker.engines import Batching, SynthesisRequest
from worker.runner import Outcome


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_measured_engine_records_size_time_speech_and_rtf() -> None:
    engine = metrics.measured(HalfSecondEngine(), "unit-model", "cpu")
    before = sample("ttsfleet_audio_seconds_total", model="unit-model")
    out = engine.synthesize([SynthesisRequest(text="a", voice="v")] * 3)
    assert len(out) == 3 and engine.version == "test" and engine.batching is Batching.PADDED
    assert sample("ttsfleet_audio_seconds_total", model="unit-model") - before == 1.5
    assert sample("ttsfleet_batch_size_sum", model="unit-model") >= 3
    assert sample("ttsfleet_realtime_factor_count", model="unit-model") >= 1
    assert sample("ttsfleet_engine_seconds_count", model="unit-model") >= 1


def test_outcomes_count_ends_not_redeliveries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "_model", lambda: "unit-model")
    finished = {"model": "unit-model", "voice": "v"}
    failed_before = sample("ttsfleet_jobs_failed_total", code="invalid_text", **finished)
    ok_before = sample("ttsfleet_jobs_finished_total", status="succeeded", **finished)
    metrics.record_outcome(Outcome(JobStatus.SUCCEEDED, voice="v"))
    metrics.record_outcome(Outcome(JobStatus.FAILED, voice="v", code="invalid_text"))
    metrics.record_outcome(Outcome(JobStatus.QUEUED, retry_in=1.0, voice="v"))
    metrics.record_outcome(Outcome(None))
    assert sample("ttsfleet_jobs_finished_total", status="succeeded", **finished) - ok_before == 1
    assert (
        sample("ttsfleet_jobs_failed_total", code="invalid_text", **finished) - failed_before == 1
    )
    assert sample("ttsfleet_jobs_finished_total", status="queued", **finished) == 0


def test_record_recycle_counts_by_reason() -> None:
    before = sample("ttsfleet_worker_recycles_total", reason="rss")
    metrics.record_recycle("rss")
    assert sample("ttsfleet_worker_recycles_total", reason="rss") - before == 1


@pytest.mark.gpu
def test_gpu_memory_is_read_from_torch_on_cuda() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA here")
    held = torch.zeros(1 << 20, device="cuda")
    metrics.measured(HalfSecondEngine(), "unit-model", "cuda:0").synthesize(
        [SynthesisRequest(text="a", voice="v")]
    )
    assert sample("ttsfleet_gpu_memory_bytes", device="cuda:0") >= held.numel() * 4
