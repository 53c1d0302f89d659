"""Uploads that ride out a storage outage: retried with exponential backoff (tenacity).

A failed `put` is transient (tasks.errors.StorageError); retrying it here, in the process
that holds the encoded audio, is far cheaper than a redelivery that synthesizes again. Past
the budget the error goes to the runner, which retries the job up to MAX_ATTEMPTS.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from tasks.errors import StorageError
from tasks.storage import Storage

log = logging.getLogger(__name__)


@contextmanager
def as_storage_error() -> Iterator[None]:
    """Any failure of the storage calls inside as StorageError, which the runner retries:
    a backend may raise its own types (botocore, OSError) past the ones it maps."""
    try:
        yield
    except StorageError:
        raise
    except Exception as exc:
        raise StorageError(f"{type(exc).__name__}: {exc}") from exc


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    log.warning("upload try %d failed (%s); retrying", state.attempt_number, error)


class RetryingStorage:
    """A `Storage` whose `put` is tried `attempts` times before it raises StorageError."""

    def __init__(
        self, storage: Storage, attempts: int, first_wait_s: float, max_wait_s: float = 8.0
    ) -> None:
        self._storage = storage
        self._retrying = Retrying(
            retry=retry_if_exception_type(StorageError),
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=first_wait_s, max=max_wait_s),
            before_sleep=_log_retry,
            reraise=True,
        )

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self._retrying(self._storage.put, key, data, content_type)

    def put_file(self, key: str, source: BinaryIO, content_type: str) -> None:
        """Each try sends `source` from where it stood at the first."""
        start = source.tell()

        def attempt() -> None:
            source.seek(start)
            self._storage.put_file(key, source, content_type)

        self._retrying(attempt)

    def delete(self, key: str) -> None:
        self._storage.delete(key)

    def copy(self, source: str, target: str) -> bool:
        return self._storage.copy(source, target)

    def local_path(self, key: str) -> Path | None:
        return self._storage.local_path(key)

    def presigned_url(self, key: str) -> str | None:
        return self._storage.presigned_url(key)

    def read(self, key: str) -> bytes | None:
        return self._storage.read(key)

    def check(self) -> None:
        self._storage.check()
