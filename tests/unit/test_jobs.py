"""The job value: request validation, ids, statuses, the queue message."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tasks.errors import InvalidJob
from tasks.jobs import JobMessage, JobRequest, JobStatus, job_id_floor, new_job_id


def parse(body: dict[str, object], limit: int = 5000) -> JobRequest:
    return JobRequest.model_validate(body, context={"max_text_chars": limit})


def test_defaults_fill_everything_but_text() -> None:
    request = parse({"text": "  Hello.  "})
    assert request.text == "Hello."
    assert (request.speed, request.format.value, request.priority.value) == (1.0, "wav", "normal")
    assert request.sample_rate is None and request.voice is None


@pytest.mark.parametrize(
    "body",
    [
        {"text": ""},
        {"text": " \n\t "},
        {"text": "x" * 11},
        {"text": "hi", "speed": 0.1},
        {"text": "hi", "speed": float("nan")},
        {"text": "hi", "format": "aiff"},
        {"text": "hi", "sample_rate": 12345},
        {"text": "hi", "unknown": 1},
        {"text": "hi", "deadline_s": 0},
        {"text": "hi", "metadata": {"blob": "x" * 17000}},
        {"text": "hi", "callback_url": "ftp://example.com/hook"},
        {"text": "a\x00b"},
    ],
)
def test_bad_requests_are_rejected(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        parse(body, limit=10)


def test_ids_sort_by_creation_time() -> None:
    earlier = new_job_id(now_ms=1_700_000_000_000)
    later = new_job_id(now_ms=1_700_000_000_001)
    assert earlier < later and len(earlier) == 26
    assert job_id_floor(1_700_000_000_001) <= later
    assert job_id_floor(1_700_000_000_001) > earlier


def test_terminal_statuses() -> None:
    assert {s for s in JobStatus if s.is_terminal()} == {
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.CANCELED,
    }


def test_message_round_trips_and_rejects_garbage() -> None:
    message = JobMessage(job_id="01ABC", tenant="acme")
    assert JobMessage.decode(message.encode()) == message
    for garbage in (None, "01ABC", {"job_id": "x"}, {"job_id": "x", "tenant": "t", "more": 1}):
        with pytest.raises(InvalidJob):
            JobMessage.decode(garbage)
