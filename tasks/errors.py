"""The error tree: one root, transient vs permanent, each with a stable code.

Errors cross process boundaries (Celery children, pickled tracebacks), so every class
takes only its message as a constructor argument.
"""

from __future__ import annotations


class FleetError(Exception):
    """Root of every error ttsfleet raises on purpose; `code` is what clients see."""

    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PermanentError(FleetError):
    """Retrying cannot help (bad text, unknown voice): fail the job at once."""


class TransientError(FleetError):
    """A retry may succeed (storage blip, engine hiccup)."""


class InvalidJob(PermanentError):
    """A queue message that does not decode to a job."""

    code = "invalid_job"


class InvalidText(PermanentError):
    """Text the engine cannot turn into speech (nothing pronounceable)."""

    code = "invalid_text"


class UnknownVoice(PermanentError):
    code = "unknown_voice"


class EngineError(TransientError):
    """The engine failed unexpectedly; the job is retried up to MAX_ATTEMPTS."""

    code = "engine_error"


class StorageError(TransientError):
    code = "storage_error"


class WorkerLost(PermanentError):
    code = "worker_lost"


class DeadlineExceeded(PermanentError):
    code = "deadline_exceeded"


class CallbackForbidden(PermanentError):
    """A callback URL that is not http(s) or whose host is, or resolves to, an address the
    private-address (SSRF) guard refuses."""

    code = "callback_url_forbidden"
