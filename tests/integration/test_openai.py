"""The official `openai` package against a running fleet (API, dispatcher, real worker):
`client.audio.speech.create` and `with_streaming_response` in every format, and every
error in OpenAI's shape with the SDK's own exception classes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest

from api.openai import Aliases
from tasks.settings import Settings
from tests.conftest import API_KEYS, ApiServer, RedisServer, fleet_settings, serving
from tests.helpers.audio_probe import probe
from worker.audio import AAC_PRIMING_SAMPLES

SENTENCE = "Your order has shipped and will arrive on Thursday."
NATIVE_RATE = 22050
FORMATS = {
    # response_format: (Content-Type, rate ffmpeg decodes it at)
    "mp3": ("audio/mpeg", NATIVE_RATE),
    "opus": ("audio/ogg; codecs=opus", 48000),
    "aac": ("audio/aac", NATIVE_RATE),
    "flac": ("audio/flac", NATIVE_RATE),
    "wav": ("audio/wav", NATIVE_RATE),
    "pcm": ("audio/pcm", 24000),  # OpenAI's pcm: 24 kHz s16le
}


@pytest.fixture(scope="module")
def fleet(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    settings = fleet_settings(redis_server, tmp_path_factory.mktemp("openai"), db=3)
    with serving(settings, settings.home.parent / "worker.log", concurrency=1) as (api, _):
        yield api


SDK = Callable[..., openai.OpenAI]


@pytest.fixture
def sdk() -> Iterator[SDK]:
    """The official client for an API and key; closed after the test."""
    clients: list[openai.OpenAI] = []

    def make(api: ApiServer, key: str = API_KEYS["acme"]) -> openai.OpenAI:
        # No retries: a test must see the first answer, not the SDK's third.
        client = openai.OpenAI(base_url=api.url + "/v1", api_key=key, max_retries=0, timeout=120)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_speech_in_each_format_decodes_to_its_rate_and_duration(
    fleet: ApiServer, fmt: str, sdk: SDK
) -> None:
    content_type, rate = FORMATS[fmt]
    response = sdk(fleet).audio.speech.with_raw_response.create(
        model="tts-1",
        voice="alloy",
        input=SENTENCE,
        response_format=fmt,  # type: ignore[arg-type]
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    data = response.parse().read()
    with fleet.client() as http:
        job = http.get(f"/v1/jobs/{response.headers['x-job-id']}").json()
    assert job["status"] == "succeeded" and job["audio"]["sample_rate"] == rate
    found = probe(data, raw_rate=rate if fmt == "pcm" else None)
    assert (found.sample_rate, found.channels) == (rate, 1)
    expected = job["audio"]["duration_s"]
    if fmt == "aac":
        expected += AAC_PRIMING_SAMPLES / rate
    assert found.duration_s == pytest.approx(expected, abs=0.05)
    assert expected > 1.0


@pytest.mark.parametrize("stream_format", [None, "audio"])
def test_speech_streams_with_the_sdk(
    fleet: ApiServer, tmp_path: Path, sdk: SDK, stream_format: str | None
) -> None:
    """The whole file, or (`stream_format: audio`) the job's stream as it is made: a
    player decodes either to the same mp3."""
    target = tmp_path / "speech.mp3"
    with sdk(fleet).audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts",
        voice="coral",
        input=SENTENCE,
        instructions="Speak in a cheerful and positive tone.",  # accepted, ignored
        **({"stream_format": stream_format} if stream_format else {}),  # type: ignore[arg-type]
    ) as response:
        assert response.headers["content-type"] == "audio/mpeg"
        response.stream_to_file(target)
    found = probe(target.read_bytes())
    assert (found.codec, found.sample_rate) == ("mp3", NATIVE_RATE)
    assert found.duration_s > 1.0


def test_fleet_names_and_extensions_work_too(fleet: ApiServer, sdk: SDK) -> None:
    with fleet.client() as http:
        voice = http.get("/v1/voices").json()[0]
    audio = sdk(fleet).audio.speech.create(
        model=voice["model"],
        voice=voice["id"],
        input=SENTENCE,
        response_format="wav",
        speed=1.5,
        extra_body={"loudness_lufs": -20},
    )
    assert probe(audio.read()).codec == "pcm_s16le"


@pytest.mark.parametrize(
    ("fields", "code", "param"),
    [
        ({"voice": "nobody"}, "unknown_voice", "voice"),
        ({"model": "tts-9"}, "unknown_model", "model"),
        ({"input": "   "}, "validation_error", "input"),
        ({"input": "x" * 5001}, "validation_error", "input"),
        ({"speed": 9.0}, "validation_error", "speed"),
        ({"response_format": "wma"}, "validation_error", "response_format"),
        ({"stream_format": "sse"}, "unsupported_stream_format", "stream_format"),
        ({"stream_format": "video"}, "validation_error", "stream_format"),
    ],
)
def test_bad_requests_answer_400_in_openai_shape(
    fleet: ApiServer, fields: dict[str, object], code: str, param: str, sdk: SDK
) -> None:
    request: dict[str, object] = {"model": "tts-1", "voice": "alloy", "input": SENTENCE, **fields}
    with pytest.raises(openai.BadRequestError) as raised:
        sdk(fleet).audio.speech.create(**request)  # type: ignore[arg-type]
    error = raised.value
    assert error.status_code == 400
    assert error.code == code and error.param == param and error.type == "invalid_request_error"
    assert set(error.response.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("voice", [{}, {"id": 5}, {"name": "alloy"}, 7, None, ["alloy"]])
def test_a_voice_of_neither_form_is_told_what_a_voice_is(api: ApiServer, voice: object) -> None:
    """No worker needed: the request is refused before it is a job."""
    with api.client() as http:
        response = http.post(
            "/v1/audio/speech", json={"model": "tts-1", "input": SENTENCE, "voice": voice}
        )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error == {
        "message": "voice: Input should be a voice name (a string) or an object with its "
        'name in "id"',
        "type": "invalid_request_error",
        "param": "voice",
        "code": "validation_error",
    }


def test_a_job_that_ends_without_a_stream_answers_its_stored_file(
    fleet: ApiServer, sdk: SDK
) -> None:
    """The second request is a result-cache hit: no stream is made, so the same response
    carries the stored file, not a redirect (OpenAI's clients expect the body)."""
    request = {
        "model": "tts-1", "voice": "alloy", "input": "A cached sentence, streamed once.",
        "response_format": "wav", "stream_format": "audio",
    }  # fmt: skip
    answers = []
    for _ in range(2):
        response = sdk(fleet).audio.speech.with_raw_response.create(**request)  # type: ignore[arg-type]
        answers.append((response.status_code, response.headers["x-job-id"], response.content))
    (first_status, first_id, streamed), (status, job_id, data) = answers
    assert first_status == status == 200 and first_id != job_id
    assert streamed[40:44] == b"\xff\xff\xff\xff"  # made while heard: its length was open
    with fleet.client() as http:
        stored = http.get(f"/v1/jobs/{job_id}/audio").content
    assert data == stored and data[40:44] != b"\xff\xff\xff\xff"


def test_a_wrong_key_is_an_authentication_error(fleet: ApiServer, sdk: SDK) -> None:
    with pytest.raises(openai.AuthenticationError) as raised:
        sdk(fleet, key="not-a-key").audio.speech.create(model="tts-1", voice="alloy", input="Hi.")
    assert raised.value.code == "unauthorized"
    with pytest.raises(openai.AuthenticationError):
        sdk(fleet, key="not-a-key").models.list()


def test_models_and_voices(fleet: ApiServer, sdk: SDK) -> None:
    models = sdk(fleet).models.list()
    ids = [m.id for m in models.data]
    assert ids[:1] == ["piper-joe"] and {"tts-1", "tts-1-hd", "gpt-4o-mini-tts"} <= set(ids)
    assert {m.object for m in models.data} == {"model"} and models.data[0].owned_by == "ttsfleet"
    assert sdk(fleet).models.retrieve("tts-1").id == "tts-1"
    with pytest.raises(openai.NotFoundError) as raised:
        sdk(fleet).models.retrieve("tts-9")
    assert raised.value.code == "not_found"
    with fleet.client() as http:
        voices = http.get("/v1/audio/voices").json()["voices"]
    assert {"alloy", "verse", "en_US-joe-medium"} <= {v["id"] for v in voices}
    assert all(set(v) == {"id", "name"} for v in voices)


def test_other_methods_and_paths_answer_in_openai_shape(fleet: ApiServer) -> None:
    with fleet.client() as http:
        wrong_method = http.get("/v1/audio/speech")
        nowhere = http.post("/v1/audio/translations", json={})
        unauthenticated = http.get("/v1/models", headers={"Authorization": ""})
        native = http.get("/v1/jobs/nothing")
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
    assert nowhere.status_code == 404 and nowhere.json()["error"]["type"] == "not_found_error"
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["error"]["type"] == "authentication_error"
    # The native API keeps its own shape.
    assert set(native.json()["error"]) == {"code", "message"}


def test_rate_limit_and_timeout_in_openai_shape(
    start_api: Callable[..., ApiServer], make_settings: Callable[..., Settings], sdk: SDK
) -> None:
    """No worker serves this API: the one request its bucket admits waits out the speech
    timeout (504 naming its job, with Location); the next is rate limited (429)."""
    api = start_api(make_settings(rate_limit_per_s=0.01, rate_limit_burst=1, speech_timeout_s=1))
    with pytest.raises(openai.InternalServerError) as timed_out:
        sdk(api).audio.speech.create(model="tts-1", voice="alloy", input=SENTENCE)
    error = timed_out.value
    assert error.status_code == 504 and error.code == "speech_timeout"
    location = error.response.headers["location"]
    assert location.startswith("/v1/jobs/") and location.rsplit("/", 1)[1] in error.message
    assert error.response.headers["x-should-retry"] == "false"
    with api.client() as http:
        assert http.get(location).json()["status"] == "queued"
    with pytest.raises(openai.RateLimitError) as limited:
        sdk(api).audio.speech.create(model="tts-1", voice="alloy", input=SENTENCE)
    assert limited.value.code == "rate_limited"
    assert int(limited.value.response.headers["retry-after"]) >= 1


def test_a_stream_waits_for_its_first_audio_up_to_the_speech_timeout(
    start_api: Callable[..., ApiServer], make_settings: Callable[..., Settings], sdk: SDK
) -> None:
    """No worker: `stream_format: audio` answers as the whole-file request does, 504
    naming the job once the speech timeout passes without audio."""
    api = start_api(make_settings(speech_timeout_s=1))
    with pytest.raises(openai.InternalServerError) as timed_out:
        sdk(api).audio.speech.create(
            model="tts-1", voice="alloy", input=SENTENCE, stream_format="audio"
        )
    error = timed_out.value
    assert error.status_code == 504 and error.code == "speech_timeout"
    assert error.response.headers["x-should-retry"] == "false"
    with api.client() as http:
        assert http.get(error.response.headers["location"]).json()["status"] == "queued"


def test_aliases_setting_replaces_the_defaults(make_settings: Callable[..., Settings]) -> None:
    voice = "en_US-joe-medium"
    aliases = Aliases.from_settings(make_settings(openai_aliases={"voices": {"narrator": voice}}))
    assert aliases.voices == {"narrator": voice}
    assert aliases.models["tts-1"] == "piper-joe"  # the table not given keeps its default
    with pytest.raises(ValueError, match="unknown"):
        Aliases.from_settings(make_settings(openai_aliases={"voices": {"alloy": "nobody"}}))


def test_httpx_sees_the_same_answer(fleet: ApiServer) -> None:
    """Without the SDK: a plain POST answers audio bytes, as curl would get them."""
    with fleet.client() as http:
        response = http.post(
            "/v1/audio/speech",
            json={"model": "tts-1", "input": SENTENCE, "voice": "nova", "response_format": "flac"},
            timeout=httpx.Timeout(120),
        )
    assert response.status_code == 200 and response.content[:4] == b"fLaC"


def test_clients_wait_in_the_submit_with_prefer(fleet: ApiServer) -> None:
    """The native API's own synchronous shape: Client.submit(wait=...) answers with the
    ended job (200, Preference-Applied), and synthesize() needs no polling for it."""
    import asyncio

    from client.client import AsyncClient, Client

    with Client(fleet.url, API_KEYS["acme"]) as client:
        job = client.submit("A job that ends in the submit.", wait=60, format="opus")
        assert job["status"] == "succeeded" and job["audio"]["sample_rate"] == 48000
        assert client.synthesize("Another one, said at once.")["status"] == "succeeded"

    async def run() -> dict[str, object]:
        async with AsyncClient(fleet.url, API_KEYS["acme"]) as client:
            return await client.synthesize("And one more from asyncio.", format="mulaw")

    job = asyncio.run(run())
    assert job["status"] == "succeeded" and job["format"] == "mulaw"
