"""The baseline of `bench.speech`: a bare synchronous OpenAI-compatible speech server, one
process, that runs the same engine (the fleet's first model) and the same encoder inside
the request, as the single-process servers do. The route is a plain `def`, so FastAPI runs
it in its thread pool and concurrent requests do synthesize concurrently; no queue, no
batching, no admission.

    python -m bench.bare_speech --port 8100
"""

from __future__ import annotations

import argparse
from typing import Any

from fastapi import FastAPI, Response

from tasks.jobs import AudioFormat
from tasks.settings import get_settings
from tasks.text import split_text
from worker.audio import encode, join
from worker.engines import Engine, SynthesisRequest, build_engine

app = FastAPI()
_engine: dict[str, Engine] = {}


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/audio/speech")
def speech(body: dict[str, Any]) -> Response:
    engine = _engine["engine"]
    voice = get_settings().default_voice
    requests = [
        SynthesisRequest(text=piece, voice=voice, speed=float(body.get("speed", 1.0)))
        for piece in split_text(str(body["input"]))
    ]
    audio = join(engine.synthesize(requests))
    fmt = AudioFormat(body.get("response_format", "mp3"))
    encoded = encode(audio, fmt, audio.sample_rate)
    return Response(encoded.data, media_type=fmt.content_type)


def main() -> None:
    import uvicorn

    from api.server import bind

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    settings = get_settings()
    engine = build_engine(settings.models[settings.serving_model()])
    engine.load("cpu")
    _engine["engine"] = engine
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[bind("127.0.0.1", args.port)])


if __name__ == "__main__":
    main()
