"""`Client` and `AsyncClient` against a real fleet (API, dispatcher, a worker process with a
tiny test engine): every call of the one is a call of the other, with the same answer."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from contextlib import aclosing
from typing import Any

import pytest
import redis
import soundfile

from client.client import ApiError, AsyncClient, Client
from tasks import keys
from tasks.settings import ModelSpec, VoiceSpec
from tests.conftest import API_KEYS, ApiServer, RedisServer, fleet_settings, serving

VOICE = "tone"
# Four pieces of at most 300 characters, one tone each.
TEXT = " ".join(f"Sentence number {i} goes on for a while, and then it stops." for i in range(16))


@pytest.fixture(scope="module")
def fleet(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    tmp = tmp_path_factory.mktemp("clients")
    settings = fleet_settings(
        redis_server, tmp, db=9, result_cache=False, rate_limit_per_s=0, max_attempts=1,
        models={"m": ModelSpec(engine="tests.engines:RaisingEngine", options={"trigger": "Kaboom"},
                               voices={VOICE: VoiceSpec(language="en", sample_rate=16000)})},
    )  # fmt: skip
    with redis.Redis.from_url(settings.redis_url) as client:
        client.flushdb()
    with serving(settings, tmp / "worker.log") as (api, _):
        yield api


def sync_client(fleet: ApiServer, tenant: str = "acme") -> Client:
    return Client(fleet.url, API_KEYS[tenant], timeout=60)


def async_client(fleet: ApiServer, tenant: str = "acme") -> AsyncClient:
    return AsyncClient(fleet.url, API_KEYS[tenant], timeout=60)


def ids(jobs: list[dict[str, Any]]) -> list[str]:
    return [job["id"] for job in jobs]


def test_both_clients_list_recent_jobs_and_page_through_all_of_them(fleet: ApiServer) -> None:
    # globex: no other test of this module submits as globex.
    with sync_client(fleet, "globex") as client:
        submitted = [client.submit(f"Job {i}.", voice=VOICE)["id"] for i in range(5)]
        newest_first = submitted[::-1]
        for job_id in submitted:
            client.wait(job_id, timeout=60)
        assert ids(client.jobs(limit=2)) == newest_first[:2]
        assert ids(list(client.iter_jobs(page=2))) == newest_first
        assert ids(list(client.iter_jobs(status="failed", page=2))) == []

    async def listed() -> tuple[list[str], list[str], list[str], list[str]]:
        async with async_client(fleet, "globex") as client:
            recent = ids(await client.jobs(limit=2))
            every = [job["id"] async for job in client.iter_jobs(page=2)]
            succeeded = [job["id"] async for job in client.iter_jobs(status="succeeded")]
            failed = ids(await client.jobs(status="failed"))
            return recent, every, succeeded, failed

    recent, every, succeeded, failed = asyncio.run(listed())
    assert recent == newest_first[:2]
    assert every == succeeded == newest_first
    assert failed == []


def test_both_clients_read_a_jobs_timestamps(fleet: ApiServer) -> None:
    with sync_client(fleet) as client:
        job = client.synthesize(TEXT, voice=VOICE)
        assert job["status"] == "succeeded"
        found = client.timestamps(job["id"])

    async def read() -> dict[str, Any]:
        async with async_client(fleet) as client:
            return await client.timestamps(job["id"])

    assert asyncio.run(read()) == found
    assert found["granularity"] == "sentence"
    assert " ".join(item["text"] for item in found["items"]) == TEXT
    assert found["items"][-1]["end_s"] == pytest.approx(job["audio"]["duration_s"], abs=0.002)


def test_both_clients_stream_a_jobs_audio_then_its_stored_file_whole(
    fleet: ApiServer,
) -> None:
    async def stream(job_id: str) -> tuple[list[bytes], dict[str, Any]]:
        async with async_client(fleet) as client:
            chunks = [chunk async for chunk in client.stream(job_id)]
            return chunks, await client.get(job_id)

    async def first_chunk(job_id: str) -> bytes:
        """Leaving early: `aclosing` closes the response with the generator."""
        async with async_client(fleet) as client, aclosing(client.stream(job_id)) as chunks:
            async for chunk in chunks:
                return chunk
        raise AssertionError("no audio")

    with sync_client(fleet) as client:
        job_id = client.submit(TEXT, voice=VOICE)["id"]
        chunks, job = asyncio.run(stream(job_id))
        # The stream ends once the job is recorded succeeded.
        assert job["status"] == "succeeded"
        streamed = b"".join(chunks)
        # While the stream lingers, it is replayed: the sync client reads the same bytes.
        assert b"".join(client.stream(job_id)) == streamed
        assert streamed[:4] == b"RIFF" and streamed[40:44] == b"\xff\xff\xff\xff"
        assert streamed.startswith(asyncio.run(first_chunk(job_id)))
        stored = client.download(job_id)
        samples, _ = soundfile.read(io.BytesIO(streamed), dtype="int16")
        assert len(samples) == len(soundfile.read(io.BytesIO(stored), dtype="int16")[0])

        # Once the stream is gone, the API points to the stored file (307): both get it whole.
        with redis.Redis.from_url(fleet.settings.redis_url) as db:
            db.delete(keys.audio_stream_key(job_id))
        assert list(client.stream(job_id)) == [stored]
    assert asyncio.run(stream(job_id))[0] == [stored]


def test_both_clients_raise_for_the_stream_of_a_job_that_ended_without_audio(
    fleet: ApiServer,
) -> None:
    with sync_client(fleet) as client:
        job = client.synthesize("Kaboom.", voice=VOICE)
        assert job["status"] == "failed"
        with pytest.raises(ApiError) as raised:
            b"".join(client.stream(job["id"]))
        assert raised.value.code == "job_not_finished"

    async def stream() -> None:
        async with async_client(fleet) as client:
            async for _ in client.stream(job["id"]):
                pass

    with pytest.raises(ApiError) as raised_async:
        asyncio.run(stream())
    assert raised_async.value.code == "job_not_finished"


def test_async_client_has_every_public_call_of_the_sync_client() -> None:
    def calls(cls: type) -> set[str]:
        return {name for name in vars(cls) if not name.startswith("_")}

    # Only the closing differs in name: `close` is `aclose` in asyncio (httpx's names).
    assert calls(Client) - {"close"} == calls(AsyncClient) - {"aclose"}
