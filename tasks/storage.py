"""Where audio objects live: a local folder or an S3-compatible bucket.

Shared by the worker (which writes) and the API (which serves or presigns), so it lives
in the contract package. Keys are deterministic (`{tenant}/{job_id}.{ext}`): a job that
runs twice overwrites its own object instead of leaving a second one.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Protocol
from urllib.parse import unquote, urlparse

from tasks.errors import StorageError
from tasks.settings import Settings


class Storage(Protocol):
    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    def put_file(self, key: str, source: BinaryIO, content_type: str) -> None:
        """Store what `source` holds from its current position on: an object too large to
        hold in memory (a book's audio), streamed from a spool file."""
        ...

    def delete(self, key: str) -> None: ...

    def copy(self, source: str, target: str) -> bool:
        """Copy an object; False if `source` does not exist."""
        ...

    def local_path(self, key: str) -> Path | None:
        """A file the API can stream, or None where it must redirect."""
        ...

    def presigned_url(self, key: str) -> str | None: ...

    def read(self, key: str) -> bytes | None:
        """The object's bytes (for an API answering with audio itself); None if missing."""
        ...

    def check(self) -> None:
        """Raise StorageError if the backend cannot be reached."""
        ...


_COPY_BYTES = 1 << 20
# The largest object S3 copies in one CopyObject request.
SINGLE_COPY_BYTES = 5 * 10**9


class FileStorage:
    """Objects as files under one root; writes are atomic (temp file, then rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise StorageError(f"key escapes the storage root: {key!r}")
        return path

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self.put_file(key, io.BytesIO(data), content_type)

    def put_file(self, key: str, source: BinaryIO, content_type: str) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc}") from exc
        try:
            with os.fdopen(fd, "wb") as handle:
                shutil.copyfileobj(source, handle, _COPY_BYTES)
            os.replace(tmp, path)
        except BaseException as exc:
            # A half-written temp file is never left behind (a retry would add another).
            Path(tmp).unlink(missing_ok=True)
            if isinstance(exc, (OSError, ValueError)):  # ValueError: a closed source
                raise StorageError(f"cannot write {path}: {exc}") from exc
            raise

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def copy(self, source: str, target: str) -> bool:
        """Streamed, file to file: a book's audio may be larger than memory allows."""
        try:
            handle = self._path(source).open("rb")
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StorageError(f"cannot read {source}: {exc}") from exc
        with handle:
            self.put_file(target, handle, "")
        return True

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None

    def presigned_url(self, key: str) -> str | None:
        return None

    def read(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {key}: {exc}") from exc

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create {self.root}: {exc}") from exc


class S3Storage:
    """Objects in an S3-compatible bucket (AWS, MinIO, R2) under an optional prefix."""

    def __init__(
        self,
        bucket: str,
        prefix: str,
        endpoint_url: str | None,
        region: str,
        presign_expires_s: int,
        public_url: str | None = None,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._expires = presign_expires_s
        config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5)
        self._client: Any = boto3.client(
            "s3", endpoint_url=endpoint_url, region_name=region, config=config
        )
        # A presigned URL signs its host: one for clients is made by a client of the public
        # endpoint (presigning is local, so this one never connects anywhere).
        self._presigner: Any = (
            boto3.client("s3", endpoint_url=public_url, region_name=region, config=config)
            if public_url and public_url != endpoint_url
            else self._client
        )

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes, content_type: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type
            )
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot upload s3://{self.bucket}/{self._key(key)}: {exc}") from exc

    def put_file(self, key: str, source: BinaryIO, content_type: str) -> None:
        """boto3's managed upload: one PUT up to its threshold (8 MiB), parts past it, so
        an object over S3's 5 GB single-PUT limit still goes, a part at a time."""
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.upload_fileobj(
                source, self.bucket, self._key(key), ExtraArgs={"ContentType": content_type}
            )
        except (BotoCoreError, ClientError, S3UploadFailedError) as exc:
            raise StorageError(f"cannot upload s3://{self.bucket}/{self._key(key)}: {exc}") from exc

    def delete(self, key: str) -> None:
        self._client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def copy(self, source: str, target: str) -> bool:
        """One server-side CopyObject up to S3's 5 GB limit for it; past that (a long book
        at a high rate) boto3's managed copy, in parts, with the source's content type."""
        from botocore.exceptions import BotoCoreError, ClientError

        origin = {"Bucket": self.bucket, "Key": self._key(source)}
        try:
            head = self._client.head_object(**origin)
            if head["ContentLength"] <= SINGLE_COPY_BYTES:
                self._client.copy_object(
                    Bucket=self.bucket, Key=self._key(target), CopySource=origin
                )
            else:
                self._client.copy(
                    origin, self.bucket, self._key(target),
                    ExtraArgs={"ContentType": head.get("ContentType", "")},
                )  # fmt: skip
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return False
            raise StorageError(f"cannot copy {source} to {target}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"cannot copy {source} to {target}: {exc}") from exc
        return True

    def local_path(self, key: str) -> Path | None:
        return None

    def presigned_url(self, key: str) -> str:
        url: str = self._presigner.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self._key(key)},
            ExpiresIn=self._expires,
        )
        return url

    def read(self, key: str) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
            data: bytes = answer["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise StorageError(f"cannot read {key}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"cannot read {key}: {exc}") from exc
        return data

    def check(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot reach bucket {self.bucket}: {exc}") from exc


def storage_from_url(
    url: str,
    endpoint_url: str | None = None,
    region: str = "us-east-1",
    presign_expires_s: int = 3600,
    public_url: str | None = None,
) -> Storage:
    """`file:///abs/path` or `s3://bucket/prefix`."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return FileStorage(Path(unquote(parsed.path)))
    if parsed.scheme == "s3" and parsed.netloc:
        return S3Storage(
            parsed.netloc, parsed.path, endpoint_url, region, presign_expires_s, public_url
        )
    raise ValueError(
        f"TTSFLEET_STORAGE_URL must be file:///path or s3://bucket/prefix, not {url!r}"
    )


def storage_from_settings(settings: Settings) -> Storage:
    return storage_from_url(
        settings.storage_url,
        settings.s3_endpoint_url,
        settings.s3_region,
        settings.presign_expires_s,
        settings.s3_public_url,
    )
