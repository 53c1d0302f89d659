"""Real parts for tests: redis-server on a free port, moto's S3 server, the API over
loopback, worker subprocesses. Nothing stands in for Redis, Celery or S3."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio
import uvicorn

from api.app import create_app
from tasks.settings import Settings
from tasks.store import JobStore

ROOT = Path(__file__).resolve().parents[1]
API_KEYS = {"acme": "key-acme", "globex": "key-globex"}
TEST_OUTPUT = ROOT / "test-output"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll `check` until it returns something truthy; fail the test past `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # not ready yet
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s (last: {last!r})")


class RedisServer:
    """A redis-server subprocess with AOF, restartable on the same port and data."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.dir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.exit("redis-server is not installed (make test installs it)", returncode=3)
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        wait_until(client.ping, timeout=10)
        client.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@asynccontextmanager
async def async_twin(client: redis.Redis) -> AsyncIterator[redis.asyncio.Redis]:
    """An asyncio client of `client`'s server and database, for what the API awaits."""
    kwargs = client.connection_pool.connection_kwargs
    twin = redis.asyncio.Redis(
        host=kwargs["host"], port=kwargs["port"], db=kwargs.get("db", 0), decode_responses=True
    )
    try:
        yield twin
    finally:
        await twin.aclose()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client on a flushed database: each test starts from nothing."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def make_settings(redis_server: RedisServer, tmp_path: Path) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "redis_url": redis_server.url,
            "storage_url": "file://" + str(tmp_path / "audio"),
            "api_keys": ",".join(f"{t}:{k}" for t, k in API_KEYS.items()),
            "home": tmp_path / "home",
            # The test keys are short: warned about, as under `make up` (tasks.tenants).
            "dev_mode": True,
        }
        values.update(overrides)
        return Settings(**values)

    return build


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def store(settings: Settings, redis_client: redis.Redis) -> JobStore:
    return JobStore.from_url(settings.redis_url, settings.job_ttl_s)


class DispatcherThread:
    """The real dispatcher (scheduler.dispatcher) on the real Redis, in a thread of the test."""

    def __init__(self, settings: Settings) -> None:
        from scheduler.dispatcher import Dispatcher
        from tasks.app import create_app as create_celery

        self.celery = create_celery(settings)
        self.dispatcher = Dispatcher.from_settings(settings, self.celery)
        self.stopping = threading.Event()
        self.thread = threading.Thread(
            target=self.dispatcher.run, args=(self.stopping,), daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(10)
        self.celery.close()


class ApiServer:
    """The real FastAPI app served by uvicorn on a loopback port, in a thread, with the
    dispatcher that moves its jobs to the Celery queues (`dispatch=False` leaves them
    pending)."""

    def __init__(self, settings: Settings, dispatch: bool = True, **collaborators: Any) -> None:
        self.settings = settings
        self.dispatcher = DispatcherThread(settings) if dispatch else None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(settings, **collaborators),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        wait_until(lambda: self.server.started, timeout=10)
        if self.dispatcher is not None:
            self.dispatcher.start()

    def stop(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.stop()
        self.server.should_exit = True
        self.thread.join(10)

    def app_storage(self) -> Any:
        from tasks.storage import storage_from_settings

        return storage_from_settings(self.settings)

    def client(self, tenant: str | None = "acme") -> httpx.Client:
        headers = {"Authorization": f"Bearer {API_KEYS[tenant]}"} if tenant else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@pytest.fixture
def start_api() -> Iterator[Callable[..., ApiServer]]:
    servers: list[ApiServer] = []

    def start(settings: Settings, **collaborators: Any) -> ApiServer:
        server = ApiServer(settings, **collaborators)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def api(
    start_api: Callable[..., ApiServer], settings: Settings, redis_client: redis.Redis
) -> ApiServer:
    return start_api(settings)


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a subprocess read the same settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TTSFLEET_")}
    env.update(
        TTSFLEET_REDIS_URL=settings.redis_url,
        TTSFLEET_STORAGE_URL=settings.storage_url,
        TTSFLEET_API_KEYS=settings.api_keys or "",
        # The test keys are short: test processes run as under `make up` (weak secrets are
        # warned about); the tests of the refusal set TTSFLEET_DEV_MODE=false themselves.
        TTSFLEET_DEV_MODE="true",
        TTSFLEET_MAX_ATTEMPTS=str(settings.max_attempts),
        TTSFLEET_MODELS=json.dumps({k: v.model_dump() for k, v in settings.models.items()}),
        TTSFLEET_BATCH_MAX_SIZE=str(settings.batch_max_size),
        TTSFLEET_BATCH_MAX_WAIT_MS=str(settings.batch_max_wait_ms),
        TTSFLEET_RESULT_CACHE=str(settings.result_cache).lower(),
        TTSFLEET_HOME=str(settings.home),
        TTSFLEET_LOG_FORMAT=settings.log_format,
        TTSFLEET_WORKER_HEARTBEAT_S=str(settings.worker_heartbeat_s),
        TTSFLEET_JOB_LEASE_S=str(settings.job_lease_s),
        TTSFLEET_VISIBILITY_TIMEOUT_S=str(settings.visibility_timeout_s),
        TTSFLEET_STORAGE_ATTEMPTS=str(settings.storage_attempts),
        TTSFLEET_STORAGE_RETRY_WAIT_S=str(settings.storage_retry_wait_s),
        TTSFLEET_WORKER_MAX_JOBS=str(settings.worker_max_jobs),
        TTSFLEET_WORKER_MAX_RSS_MB=str(settings.worker_max_rss_mb),
        TTSFLEET_MAX_TEXT_CHARS=str(settings.max_text_chars),
        TTSFLEET_MAX_DOCUMENT_CHARS=str(settings.max_document_chars),
        TTSFLEET_UNIT_CHARS=str(settings.unit_chars),
        TTSFLEET_PROGRESS_EVENT_S=str(settings.progress_event_s),
        PYTHONUNBUFFERED="1",
    )
    if settings.s3_endpoint_url:
        env["TTSFLEET_S3_ENDPOINT_URL"] = settings.s3_endpoint_url
    if settings.tenants_file:
        env["TTSFLEET_TENANTS_FILE"] = str(settings.tenants_file)
    return env


class WorkerProcess:
    """`ttsfleet worker` as a real subprocess (Celery prefork, the real voice)."""

    def __init__(
        self, settings: Settings, log: Path, concurrency: int = 1, extra: list[str] | None = None
    ) -> None:
        self.log = log
        args = [
            sys.executable,
            "-m",
            "fleet",
            "worker",
            "--concurrency",
            str(concurrency),
            *(extra or []),
        ]
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                args, cwd=ROOT, env=settings_env(settings), stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Ready once the node announced itself and every child loaded its model."""

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited:\n{self.log.read_text()[-3000:]}")
            text = self.log.read_text()
            return " ready." in text and "loaded on" in text

        wait_until(ready, timeout=timeout, interval=0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    workers: list[WorkerProcess] = []

    def start(settings: Settings, **kwargs: Any) -> WorkerProcess:
        worker = WorkerProcess(settings, tmp_path / f"worker-{len(workers)}.log", **kwargs)
        workers.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's S3-compatible server on loopback; returns its endpoint URL."""
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def fleet_settings(redis_server: RedisServer, tmp: Path, db: int = 0, **overrides: Any) -> Settings:
    """Settings of a test fleet: the session's Redis (database `db`: fleets that must not
    take each other's jobs use different ones), a file store under `tmp`, the test keys."""
    values: dict[str, Any] = {
        "redis_url": redis_server.url.rsplit("/", 1)[0] + f"/{db}",
        "storage_url": "file://" + str(tmp / "audio"),
        "api_keys": ",".join(f"{t}:{k}" for t, k in API_KEYS.items()),
        "home": tmp / "home",
        "dev_mode": True,
    }
    values.update(overrides)
    return Settings(**values)


@contextmanager
def serving(
    settings: Settings, log: Path, **worker_options: Any
) -> Iterator[tuple[ApiServer, WorkerProcess]]:
    """The API (with its dispatcher) and one real worker process, stopped together."""
    api = ApiServer(settings)
    api.start()
    worker = WorkerProcess(settings, log, **worker_options)
    try:
        worker.wait_ready()
        yield api, worker
    finally:
        worker.stop()
        api.stop()
