"""Every knob of the fleet, read once from `TTSFLEET_*` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

BUNDLED_VOICE = "en_US-joe-medium"


class VoiceSpec(BaseModel):
    """What the API tells clients about a voice, without loading its model."""

    language: str = "en_US"
    sample_rate: int = 22050


class ModelSpec(BaseModel):
    """One model a worker can load: its engine, the engine's options and the voices it serves."""

    engine: str
    options: dict[str, Any] = Field(default_factory=dict)
    voices: dict[str, VoiceSpec]


def _default_models() -> dict[str, ModelSpec]:
    return {
        "piper-joe": ModelSpec(
            engine="piper",
            voices={BUNDLED_VOICE: VoiceSpec(language="en_US", sample_rate=22050)},
        )
    }


def _default_storage_url() -> str:
    return "file://" + str((Path.cwd() / ".ttsfleet" / "audio").resolve())


class Settings(BaseSettings):
    """Settings of DESIGN §3; built once per process and passed to whoever needs them."""

    model_config = SettingsConfigDict(env_prefix="TTSFLEET_", extra="ignore", frozen=True)

    redis_url: str = "redis://127.0.0.1:6379/0"
    storage_url: str = Field(default_factory=_default_storage_url)
    s3_endpoint_url: str | None = None
    # Where clients reach the object store, when not where the fleet does: presigned audio
    # URLs (the 307 of GET /v1/jobs/{id}/audio) name this endpoint, e.g. the host port a
    # compose file publishes while the fleet talks to `http://minio:9000`. None: the same.
    s3_public_url: str | None = None
    s3_region: str = "us-east-1"
    presign_expires_s: int = 3600
    tenants_file: Path | None = None
    api_keys: str | None = None
    callback_allowed_networks: str = ""
    callback_retry_schedule: str = "0,5,300,1800,7200,18000,36000,86400"
    callback_timeout_s: float = 15.0
    batch_max_size: int = Field(default=16, ge=1, le=1024)
    batch_max_wait_ms: int = Field(default=20, ge=0, le=10000)
    # Time batch sizes 1, 2, 4, ... at start-up and cap batch_max_size at the knee.
    batch_autotune: bool = False
    # Identical requests reuse stored audio (worker.cache).
    result_cache: bool = True
    max_attempts: int = 3
    worker_max_jobs: int = 10000
    worker_max_rss_mb: int = 0
    worker_max_gpu_mb: int = 0
    # The longest text run as one unit on one worker; a longer one, up to
    # `max_document_chars`, fans out into units of about `unit_chars` (tasks.units).
    max_text_chars: int = 5000
    max_document_chars: int = Field(default=1_000_000, ge=1)
    unit_chars: int = Field(default=1000, ge=1)
    # A job's audio stream (tasks.streams): at most this many entries kept (a listener that
    # falls further behind is cut off), expiring this long after the last one was written.
    stream_max_entries: int = Field(default=64, ge=2)
    stream_ttl_s: int = Field(default=3600, ge=1)
    # A job that opted in to `job.progress` webhooks gets one at most this often (seconds).
    progress_event_s: float = Field(default=10.0, ge=0)
    models: dict[str, ModelSpec] = Field(default_factory=_default_models)
    job_ttl_s: int = 604800
    api_port: int = 8000
    flower_port: int = 5555
    # The Redis transport redelivers an unacked message after this long (kombu default 1 h).
    visibility_timeout_s: int = 3600
    # Submit rate limit per tenant: a token bucket refilled at this rate (requests per second;
    # a batch is one request) holding at most `rate_limit_burst`. 0 turns it off.
    rate_limit_per_s: float = 50.0
    rate_limit_burst: int = 100
    # Read rate limit per tenant (status polls, listings): a token bucket checked in the
    # same Redis script as the read (api.reads). 0 turns it off.
    read_rate_limit_per_s: float = 200.0
    read_rate_limit_burst: int = 400
    # How long an Idempotency-Key is remembered (DESIGN §4: 24 h), and how long a request
    # holding one may take before a retry may proceed (a crashed API must not block it for a day).
    idempotency_ttl_s: int = 86400
    idempotency_in_flight_s: int = 60
    # The dispatcher keeps at most this many messages in a model's Celery queue: about twice
    # what its consumers prefetch, so a tenant's backlog waits in the fair pending lists.
    dispatch_queue_depth: int = 32
    # A worker renews a lease per job it holds every third of this; the reconciler re-sends
    # a dispatched job whose lease has lapsed and whose message is in no queue for this long.
    job_lease_s: float = Field(default=10.0, gt=0)
    reconcile_interval_s: float = Field(default=5.0, gt=0)
    # An upload that fails is tried this many times in all, waiting from `storage_retry_wait_s`
    # doubling up to 8 s between tries, before the job's attempt fails with storage_error.
    # 8 tries wait 31.5 s in all: one attempt outlasts a 30 s outage of the object store.
    storage_attempts: int = Field(default=8, ge=1)
    storage_retry_wait_s: float = Field(default=0.5, ge=0)
    # Which model and device this worker process serves (`ttsfleet worker` sets them).
    worker_model: str | None = None
    worker_device: str = "cpu"
    # True in the worker process that worker.supervisor runs (`ttsfleet worker` sets it).
    worker_supervised: bool = False
    # Touched once the model is loaded and warm (a readiness probe can test for it).
    worker_ready_file: Path | None = None
    # Serve this worker's Prometheus metrics on this port (`ttsfleet worker --metrics-port`);
    # None: no endpoint. Prefork children share one multiprocess directory (worker.metrics).
    worker_metrics_port: int | None = None
    # How often a worker writes its heartbeat hash (node, model, rate) for `ttsfleet fleet`.
    worker_heartbeat_s: float = Field(default=5.0, gt=0)
    # POST /v1/audio/speech answers with the audio if the job ends within this long, else
    # 504 speech_timeout naming the job (api.openai).
    speech_timeout_s: float = Field(default=60.0, gt=0, le=600)
    # OpenAI names -> this fleet's: {"models": {"tts-1": "<model>"}, "voices": {"alloy":
    # "<voice>"}}; a table given replaces that default table (api.openai.Aliases).
    openai_aliases: dict[Literal["models", "voices"], dict[str, str]] | None = None
    # "json": one JSON object per log line with job_id, tenant, worker, batch_id (tasks.logs).
    log_format: Literal["text", "json"] = "text"
    # Set by `make up`: weak keys, secrets and Redis passwords are warned about, not refused
    # (tasks.tenants.refuse_weak_secrets).
    dev_mode: bool = False
    # Per-tenant labels on /metrics (tenant ids and their counts, seen by anyone who can
    # reach the unauthenticated endpoint); off: those series carry `tenant="all"`.
    metrics_tenant_labels: bool = False
    # Where `make up` keeps Redis data, audio, the env file and the dev tenant.
    home: Path = Path(".ttsfleet")

    @field_validator("models")
    @classmethod
    def _at_least_one_model(cls, value: dict[str, ModelSpec]) -> dict[str, ModelSpec]:
        if not value or not any(spec.voices for spec in value.values()):
            raise ValueError("TTSFLEET_MODELS must declare at least one model with a voice")
        return value

    @property
    def default_voice(self) -> str:
        """The first voice of the first model: what a job without `voice` gets."""
        first = next(spec for spec in self.models.values() if spec.voices)
        return next(iter(first.voices))

    def model_for_voice(self, voice: str) -> str | None:
        """The model whose queue a job for this voice goes to, or None if no model serves it."""
        for name, spec in self.models.items():
            if voice in spec.voices:
                return name
        return None

    def serving_model(self) -> str:
        """The model this worker serves: `worker_model`, else the first one declared."""
        return self.worker_model or next(iter(self.models))


_installed: Settings | None = None


@lru_cache(maxsize=1)
def _from_environment() -> Settings:
    return Settings()


def get_settings() -> Settings:
    """The process's settings: those `install`ed, else read from the environment once."""
    return _installed if _installed is not None else _from_environment()


def install(settings: Settings) -> Settings:
    """Make `settings` this process's (and its forked children's) before anything reads
    them: a launcher that refines the environment's settings with its command line (the
    worker's model and device) hands them over this way, not through `os.environ`."""
    global _installed
    _installed = settings
    return settings
