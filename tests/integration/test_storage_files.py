"""Objects stored from a spool file (`Storage.put_file`), as a book's audio is: to moto's
S3 server in parts past boto3's threshold, to a folder atomically, and again from the
file's start when a try fails partway."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

import boto3
import pytest

from tasks import storage as storage_module
from tasks.errors import StorageError
from tasks.storage import FileStorage, S3Storage
from worker.uploads import RetryingStorage

MIB = 1 << 20


def spool(tmp_path: Path, size: int, skip: int = 0) -> BinaryIO:
    """A file of `size` random bytes after `skip` bytes of something else, positioned at
    the start of the random ones."""
    handle = (tmp_path / "spool").open("w+b")
    handle.write(b"x" * skip + os.urandom(size))
    handle.seek(skip)
    return handle


def test_a_large_object_goes_to_s3_in_parts_and_reads_back_whole(
    s3_server: str, tmp_path: Path
) -> None:
    s3 = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    s3.create_bucket(Bucket="spooled")
    storage = S3Storage("spooled", "tts", s3_server, "us-east-1", 60)
    with spool(tmp_path, 20 * MIB, skip=100) as source:
        storage.put_file("acme/book.wav", source, "audio/wav")
        source.seek(100)
        expected = source.read()
    head = s3.head_object(Bucket="spooled", Key="tts/acme/book.wav")
    assert head["ContentType"] == "audio/wav" and head["ContentLength"] == 20 * MIB
    assert head["ETag"].strip('"').endswith("-3")  # a multipart upload, of 8 MiB parts
    assert storage.read("acme/book.wav") == expected


def test_a_spool_file_lands_in_the_folder_whole_and_alone(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path / "audio")
    with spool(tmp_path, 3 * MIB + 5, skip=7) as source:
        storage.put_file("acme/book.flac", source, "audio/flac")
        source.seek(7)
        expected = source.read()
    path = storage.local_path("acme/book.flac")
    assert path is not None and path.read_bytes() == expected
    assert [p.name for p in path.parent.iterdir()] == ["book.flac"]  # no temp file left


class FailsPartway(FileStorage):
    """A folder whose first upload reads half of its source and then fails, as a dropped
    connection does in the middle of a body."""

    tries = 0

    def put_file(self, key: str, source: BinaryIO, content_type: str) -> None:
        self.tries += 1
        if self.tries == 1:
            source.read(MIB // 2)
            raise StorageError("connection reset by peer")
        super().put_file(key, source, content_type)


def test_a_retried_upload_sends_the_file_again_from_its_start(tmp_path: Path) -> None:
    inner = FailsPartway(tmp_path / "audio")
    storage = RetryingStorage(inner, attempts=3, first_wait_s=0.01)
    with spool(tmp_path, MIB, skip=11) as source:
        storage.put_file("acme/book.mp3", source, "audio/mpeg")
        source.seek(11)
        expected = source.read()
    path = inner.local_path("acme/book.mp3")
    assert inner.tries == 2 and path is not None and path.read_bytes() == expected


def test_an_upload_that_keeps_failing_raises_storage_error(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the storage root's folder would be")
    storage = RetryingStorage(FileStorage(blocked), attempts=2, first_wait_s=0.01)
    with spool(tmp_path, 1000) as source, pytest.raises(StorageError):
        storage.put_file("acme/book.wav", source, "audio/wav")


def test_an_object_past_the_single_copy_limit_is_copied_in_parts_with_its_type(
    s3_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cache hit on a book past S3's 5 GB CopyObject limit: the managed copy (shown
    here with the limit lowered to 1 MiB) keeps the bytes and the content type."""
    monkeypatch.setattr(storage_module, "SINGLE_COPY_BYTES", MIB)
    s3 = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    s3.create_bucket(Bucket="copied")
    storage = S3Storage("copied", "", s3_server, "us-east-1", 60)
    with spool(tmp_path, 20 * MIB) as source:
        storage.put_file("acme/first.wav", source, "audio/wav")
    assert storage.copy("acme/first.wav", "acme/twin.wav")
    head = s3.head_object(Bucket="copied", Key="acme/twin.wav")
    assert head["ContentType"] == "audio/wav" and head["ETag"].strip('"').endswith("-3")
    assert storage.read("acme/twin.wav") == storage.read("acme/first.wav")
    assert not storage.copy("acme/missing.wav", "acme/other.wav")


class BreaksAfter:
    """A source whose second read fails, as a disk going bad under a spool file does."""

    def __init__(self) -> None:
        self.reads = 0

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        if self.reads > 1:
            raise OSError("input/output error")
        return b"x" * 1000


def test_a_failed_write_leaves_no_temp_file_and_is_a_storage_error(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path / "audio")
    with pytest.raises(StorageError):
        storage.put_file("acme/book.wav", BreaksAfter(), "audio/wav")  # type: ignore[arg-type]
    closed = spool(tmp_path, 10)
    closed.close()
    with pytest.raises(StorageError):
        storage.put_file("acme/book.wav", closed, "audio/wav")
    assert list((tmp_path / "audio").rglob("*")) == [tmp_path / "audio" / "acme"]
