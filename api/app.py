"""The FastAPI application: wiring of settings, store, queue, storage and routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import redis.asyncio
from celery import Celery
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from api import docs, errors, metrics
from api.cancel import Canceler
from api.jobs import router
from api.openai import router as openai_router
from api.pool import bounded_pool
from api.reads import JobReads
from api.streams import router as streams_router
from api.submission import Submission
from api.waiters import JobWaiters
from tasks.app import create_app as create_celery
from tasks.jobs import JobRequest
from tasks.settings import Settings, get_settings
from tasks.storage import storage_from_settings
from tasks.store import JobStore
from tasks.tenants import TenantDirectory, refuse_weak_secrets

API_VERSION = "1.0.0"
# Redis connections of one API process's event loop (bench.api: 64 clients saturate 1 core).
REDIS_CONNECTIONS = 64
# The playground page and its assets, shipped as package data (no build step).
STATIC_DIR = Path(__file__).resolve().parent / "static"


def create_app(
    settings: Settings,
    store: JobStore | None = None,
    celery: Celery | None = None,
    tenants: TenantDirectory | None = None,
) -> FastAPI:
    """Build the API; collaborators default to the ones `settings` describe."""
    # Every route awaits Redis on the event loop with this client (no blocking client in a
    # worker thread: bench.api). A burst waits for one of REDIS_CONNECTIONS instead of failing
    # (the plain asyncio pool refuses past its cap) or opening hundreds.
    client = redis.asyncio.Redis.from_pool(
        bounded_pool(
            settings.redis_url,
            max_connections=REDIS_CONNECTIONS,
            timeout=5,
            decode_responses=True,
            socket_timeout=5,
            socket_connect_timeout=2,
        )
    )

    waiters = JobWaiters(settings.redis_url)
    # Audio streams carry bytes: a client that does not decode responses (api.streams).
    stream_client = redis.asyncio.Redis.from_pool(
        bounded_pool(
            settings.redis_url, max_connections=REDIS_CONNECTIONS, timeout=5,
            socket_timeout=5, socket_connect_timeout=2,
        )
    )  # fmt: skip

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        waiters.start()
        yield
        await waiters.stop()
        await client.aclose()
        await stream_client.aclose()

    app = FastAPI(
        title="ttsfleet",
        version=API_VERSION,
        description="Asynchronous text-to-speech jobs: submit, poll or get a callback, download.",
        lifespan=lifespan,
        # /docs is served below from local assets; no /redoc (one documentation page).
        docs_url=None,
        redoc_url=None,
        # Starlette's trailing-slash redirect builds an absolute URL from the request's Host
        # header: `/v1/jobs/` is a 404, never a 307 to wherever Host points.
        redirect_slashes=False,
    )
    metrics.configure(settings)
    app.state.settings = settings
    app.state.store = store or JobStore.from_url(settings.redis_url, settings.job_ttl_s)
    app.state.celery = celery or create_celery(settings)
    app.state.tenants = tenants or TenantDirectory.from_settings(settings)
    app.state.storage = storage_from_settings(settings)
    app.state.redis = client
    app.state.stream_redis = stream_client
    app.state.submission = Submission(settings, app.state.store, client)
    app.state.reads = JobReads(
        client, settings.read_rate_limit_per_s, settings.read_rate_limit_burst, settings.job_ttl_s
    )
    app.state.waiters = waiters
    app.state.canceler = Canceler(client, settings.job_ttl_s)
    models = list(settings.models)

    errors.install(app)
    app.add_middleware(metrics.RequestMetrics)
    app.include_router(router)
    app.include_router(openai_router(settings))
    app.include_router(streams_router)

    @app.get("/", include_in_schema=False)
    async def playground() -> FileResponse:
        """The playground page; it needs no key, the key it asks for goes to `/v1`."""
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    docs.install(app)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", responses=errors.responses(errors.Unavailable))
    async def readyz() -> JSONResponse:
        """Ready when Redis answers; 503 with Retry-After otherwise."""
        try:
            await client.ping()
        except Exception:
            err = errors.Unavailable("redis is unreachable")
            return JSONResponse(errors.error_body(err.code, err.message), 503, headers=err.headers)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", include_in_schema=False)
    async def scrape() -> Response:
        return await metrics.scrape(client, models)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            body = JobRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(body.pop("$defs", {}))
            # The voices this deployment serves, so clients (and fuzzers) see the real choice.
            voices = [v for spec in settings.models.values() for v in spec.voices]
            body["properties"]["voice"] = {
                "anyOf": [{"type": "string", "enum": voices}, {"type": "null"}],
                "default": None,
                "description": f"default: {settings.default_voice}",
            }
            # What JobRequest checks by hand, said in the schema: some non-space character,
            # no NUL, at most MAX_DOCUMENT_CHARS (a fuzzer's valid text is then accepted;
            # a text past MAX_TEXT_CHARS fans out, tasks.units).
            body["properties"]["text"].update(
                minLength=1,
                maxLength=settings.max_document_chars,
                pattern=r"^[^\x00]*[^\s\x00][^\x00]*$",
            )
            components["JobRequest"] = body
            schema["components"]["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"}
            }
            docs.drop_fastapi_422s(schema)
            for path, ops in schema["paths"].items():
                if path.startswith("/v1/"):
                    for op in ops.values():
                        op["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def app_from_env() -> FastAPI:
    """Factory for uvicorn (`api.app:app_from_env`): settings from the environment; weak
    secrets refuse to start (tasks.tenants)."""
    settings = get_settings()
    tenants = TenantDirectory.from_settings(settings)
    refuse_weak_secrets(settings, tenants)
    return create_app(settings, tenants=tenants)
