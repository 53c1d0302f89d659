"""Storage outage: uploads are retried with backoff and the jobs succeed once S3 is back;
an outage longer than the whole budget fails the job with `storage_error`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.conftest import free_port
from tests.faults.conftest import Fleet, elapsed


class Moto:
    """moto's S3 server on a fixed port, stoppable and startable again with its data."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # moto keeps its buckets in this process across servers: one bucket per test.
        self.bucket = f"outage-{self.port}"
        self.server: ThreadedMotoServer | None = None

    def start(self) -> None:
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@pytest.fixture
def moto(s3_server: str) -> Iterator[Moto]:  # s3_server sets the AWS test credentials
    server = Moto()
    server.start()
    boto3.client("s3", endpoint_url=server.url, region_name="us-east-1").create_bucket(
        Bucket=server.bucket
    )
    yield server
    server.stop()


def objects(moto: Moto) -> int:
    s3 = boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1")
    return int(s3.list_objects_v2(Bucket=moto.bucket).get("KeyCount", 0))


def s3_fleet(make_fleet: Callable[..., Fleet], moto: Moto, **budget: Any) -> Fleet:
    """A fleet storing to moto's S3; `budget` overrides the retry settings (defaults: the
    service's own)."""
    fleet = make_fleet(
        "ToneEngine", storage_url=f"s3://{moto.bucket}/tts", s3_endpoint_url=moto.url, **budget
    )
    fleet.start_worker(concurrency=2)
    return fleet


def run_outage(
    make_fleet: Callable[..., Fleet], moto: Moto, jobs: int, down_s: float, **budget: Any
) -> None:
    fleet = s3_fleet(make_fleet, moto, **budget)
    moto.stop()
    with fleet.api.client() as http:
        ids = fleet.submit(http, [f"stored job {i}." for i in range(jobs)])
        time.sleep(down_s)
        moto.start()
        back = time.monotonic()
        final = fleet.wait_all_terminal(http, ids)
    assert [j["status"] for j in final] == ["succeeded"] * jobs, final
    assert objects(moto) == jobs
    retries = sum(w.log.read_text().count("upload try") for w in fleet.workers)
    print(
        f"\nS3 down {down_s} s: {jobs} jobs, 0 lost, {retries} upload retries, "
        f"all done {elapsed(back)} s after S3 came back"
    )


def test_uploads_ride_out_a_storage_outage(make_fleet: Callable[..., Fleet], moto: Moto) -> None:
    run_outage(make_fleet, moto, jobs=6, down_s=2.0, storage_retry_wait_s=0.2, max_attempts=2)


def test_a_book_rides_out_a_storage_outage(make_fleet: Callable[..., Fleet], moto: Moto) -> None:
    """S3 down while a book's units store their parts: each upload is retried, the book is
    joined once S3 is back, and the bucket holds its audio alone (no part left)."""
    fleet = s3_fleet(
        make_fleet, moto, storage_retry_wait_s=0.2, max_attempts=2,
        max_text_chars=300, unit_chars=200,
    )  # fmt: skip
    text = " ".join(f"Sentence {i} of the book that waits for its storage." for i in range(24))
    moto.stop()
    with fleet.api.client() as http:
        [book_id] = fleet.submit(http, [text])
        time.sleep(2.0)
        moto.start()
        [book] = fleet.wait_all_terminal(http, [book_id])
    assert book["status"] == "succeeded", book
    assert book["progress"]["pieces_done"] == book["progress"]["pieces_total"] > 2
    s3 = boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=moto.bucket).get("Contents", [])]
    assert keys == [f"tts/acme/{book_id}.wav"]
    assert fleet.callback_events(book_id) == [f"msg_{book_id}_succeeded"]
    assert sum(w.log.read_text().count("upload try") for w in fleet.workers) > 0


@pytest.mark.slow
def test_the_default_budget_rides_out_a_30_s_storage_outage(
    make_fleet: Callable[..., Fleet], moto: Moto
) -> None:
    run_outage(make_fleet, moto, jobs=60, down_s=30.0)


def test_an_outage_past_the_budget_fails_with_storage_error(
    make_fleet: Callable[..., Fleet], moto: Moto
) -> None:
    fleet = s3_fleet(make_fleet, moto, storage_attempts=2, storage_retry_wait_s=0.2, max_attempts=2)
    moto.stop()
    with fleet.api.client() as http:
        ids = fleet.submit(http, ["this upload never lands."])
        [job] = fleet.wait_all_terminal(http, ids)
    assert job["status"] == "failed" and job["error"]["code"] == "storage_error", job
    assert job["attempts"] == 2
