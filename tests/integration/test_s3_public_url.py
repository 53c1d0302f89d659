"""TTSFLEET_S3_PUBLIC_URL: presigned audio URLs name the endpoint clients reach, while the
fleet uploads through its own (moto's S3 server, reached under two names on loopback)."""

from __future__ import annotations

import boto3
import httpx

from tasks.settings import Settings
from tasks.storage import storage_from_settings


def bucket_storage(s3_server: str, bucket: str, **overrides: str) -> Settings:
    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(Bucket=bucket)
    return Settings(storage_url=f"s3://{bucket}/audio", s3_endpoint_url=s3_server, **overrides)


def test_presigned_url_names_the_public_endpoint_and_serves_the_object(s3_server: str) -> None:
    public = s3_server.replace("127.0.0.1", "localhost")
    storage = storage_from_settings(bucket_storage(s3_server, "public-url", s3_public_url=public))
    storage.put("acme/job.wav", b"RIFF-audio", "audio/wav")
    url = storage.presigned_url("acme/job.wav")
    assert url is not None and url.startswith(public + "/public-url/audio/acme/job.wav?")
    response = httpx.get(url)
    assert response.status_code == 200 and response.content == b"RIFF-audio"


def test_without_a_public_endpoint_the_url_names_the_fleet_endpoint(s3_server: str) -> None:
    storage = storage_from_settings(bucket_storage(s3_server, "internal-url"))
    storage.put("acme/job.wav", b"x", "audio/wav")
    url = storage.presigned_url("acme/job.wav")
    assert url is not None and url.startswith(s3_server + "/internal-url/")
