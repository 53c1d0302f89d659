"""Log lines name their job: bound fields, JSON lines, and the batcher thread, which does
not share its submitters' context variables."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator

import pytest

from tasks import logs
from tests.engines import LoggingEngine
from worker.batcher import Batcher
from worker.engines import SynthesisRequest


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logs.JsonFormatter())
        self.addFilter(logs.ContextFilter({"worker": "w1@host"}))
        self.lines: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def captured() -> Iterator[Capture]:
    handler = Capture()
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


def test_bound_fields_reach_json_lines_and_leave_with_the_block(captured: Capture) -> None:
    log = logging.getLogger("test.logs")
    with logs.bound(job_id="J1", tenant="acme", batch_id=None):
        log.info("inside")
    log.info("outside")
    inside, outside = captured.lines
    assert inside["job_id"] == "J1" and inside["tenant"] == "acme" and "batch_id" not in inside
    assert inside["message"] == "inside" and inside["worker"] == "w1@host"
    assert "job_id" not in outside and outside["worker"] == "w1@host"


def test_celery_task_lines_take_the_task_id_as_job_id(captured: Capture) -> None:
    logging.getLogger("celery.app.trace").info("Task done", extra={"data": {"id": "J9"}})
    assert captured.lines[0]["job_id"] == "J9"


def test_batcher_lines_carry_the_batch_id_and_the_jobs_of_the_batch(captured: Capture) -> None:
    batcher = Batcher(LoggingEngine(), max_size=8, max_wait_s=0.5)
    start = threading.Barrier(2)

    def job(job_id: str) -> None:
        with logs.bound(job_id=job_id, tenant="acme"):
            start.wait()
            batcher.synthesize([SynthesisRequest(text="hi", voice="v")])

    threads = [threading.Thread(target=job, args=(f"J{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    batcher.stop()
    engine_lines = [line for line in captured.lines if line["logger"] == "test.engine"]
    assert engine_lines and all(line["batch_id"] for line in engine_lines)
    assert sorted(j for line in engine_lines for j in line["job_ids"]) == ["J0", "J1"]  # type: ignore[union-attr]
    assert all(line["tenant"] == "acme" for line in engine_lines)


def test_a_batch_of_one_jobs_pieces_names_that_job_once() -> None:
    fields = logs.batch_fields([{"job_id": "J1", "tenant": "t"}] * 3)
    assert (fields["job_ids"], fields["job_id"], fields["tenant"]) == (["J1"], "J1", "t")
