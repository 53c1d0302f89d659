"""Cancel races against a real batching worker (threads pool + batcher): canceled while
queued, while waiting in the batch buffer, and after it finished. The final state is
consistent, a canceled job exposes no audio (no object, no URL, 409 on /audio) and its only
terminal event is `job.canceled`; the job batched with the canceled ones still succeeds."""

from __future__ import annotations

from collections.abc import Callable

from tests.conftest import wait_until
from tests.faults.conftest import Fleet


def test_cancel_while_queued_in_the_batch_and_after_finish(
    make_fleet: Callable[..., Fleet],
) -> None:
    fleet = make_fleet(
        "SlowEngine",
        options={"seconds": 0.3, "batching": "padded"},
        batch_max_size=4,
        # A batch of three waits here for a fourth, the job submitted after the cancels: time
        # to cancel, however slow the machine.
        batch_max_wait_ms=8000,
    )
    with fleet.api.client() as http:

        def cancel(job_id: str) -> int:
            return http.post(f"/v1/jobs/{job_id}/cancel").status_code

        queued = fleet.submit(http, ["canceled while queued 0.", "canceled while queued 1."])
        assert [cancel(j) for j in queued] == [200, 200]
        fleet.start_worker(concurrency=0)
        batch = fleet.submit(
            http, ["canceled in the batch 0.", "canceled in the batch 1.", "kept in the batch."]
        )
        wait_until(
            lambda: all(j["status"] == "running" for j in fleet.jobs(http, batch)), timeout=30
        )
        assert [cancel(j) for j in batch[:2]] == [200, 200]
        finished = fleet.submit(http, ["finished before its cancel."])
        final = fleet.wait_all_terminal(http, [*queued, *batch, *finished], timeout=60)
        assert cancel(finished[0]) == 409
        after = fleet.jobs(http, finished)[0]
        canceled = [*queued, *batch[:2]]
        audio = [http.get(f"/v1/jobs/{j}/audio").status_code for j in canceled]
    by_id = {j["id"]: j for j in final}
    assert [by_id[j]["status"] for j in canceled] == ["canceled"] * 4
    assert all(by_id[j]["audio"] is None for j in canceled)
    assert audio == [409] * 4
    # Never claimed while queued; claimed and synthesized in the batch, the result thrown away.
    assert [by_id[j]["attempts"] for j in canceled] == [0, 0, 1, 1]
    assert by_id[batch[2]]["status"] == "succeeded"
    assert after["status"] == "succeeded" and after["audio"] is not None
    assert len(fleet.objects()) == 2  # the kept job's and the finished job's
    for job_id in canceled:
        assert fleet.callback_events(job_id) == [f"msg_{job_id}_canceled"]
    for job_id in (batch[2], finished[0]):
        assert fleet.callback_events(job_id) == [f"msg_{job_id}_succeeded"]
    print("\ncancel races: 2 queued + 2 in the batch canceled, no audio; 2 succeeded; 409 after")
