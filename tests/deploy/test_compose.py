"""docker-compose.yml, checked without a container engine: the Compose Specification
schema (shipped by check-jsonschema, offline), and the properties the fleet relies on."""

from __future__ import annotations

import json
import os
from importlib.resources import files
from typing import Any

import jsonschema
import pytest

from tasks.settings import Settings
from tests.deploy.manifests import (
    COMPOSE,
    COMPOSE_ENV_EXAMPLE,
    compose_required_variables,
    env_file,
    interpolate,
    yaml_documents,
)

SYNTH_WORKERS = ("worker", "worker-cpu")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    [document] = yaml_documents(COMPOSE)
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    resolved: dict[str, Any] = interpolate(compose, env_file(COMPOSE_ENV_EXAMPLE))["services"]
    return resolved


def compose_spec_validator() -> jsonschema.Draft202012Validator:
    vendor = files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads(vendor.joinpath("compose-spec.json").read_text())
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def test_compose_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    errors = [f"{e.json_path}: {e.message}" for e in compose_spec_validator().iter_errors(compose)]
    assert errors == []


def test_compose_schema_rejects_a_misspelled_service_key(compose: dict[str, Any]) -> None:
    broken = {**compose, "services": {**compose["services"]}}
    broken["services"]["api"] = {**compose["services"]["api"], "helthcheck": {}}
    assert list(compose_spec_validator().iter_errors(broken))


def test_example_env_sets_every_variable_compose_requires() -> None:
    required = compose_required_variables(COMPOSE.read_text())
    assert required, "compose should refuse to start without its secrets"
    assert required - set(env_file(COMPOSE_ENV_EXAMPLE)) == set()


def test_every_service_environment_builds_valid_settings(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, service in services.items():
        environment = service.get("environment", {})
        ttsfleet = {k: str(v) for k, v in environment.items() if k.startswith("TTSFLEET_")}
        if not ttsfleet:
            continue
        with monkeypatch.context() as env:
            for key in [k for k in os.environ if k.startswith("TTSFLEET_")]:
                env.delenv(key)
            for key, value in ttsfleet.items():
                env.setenv(key, value)
            settings = Settings()
        assert settings.redis_url.startswith("redis://:"), (name, "redis needs the password")
        assert settings.storage_url.startswith("s3://"), name


def test_redis_keeps_an_fsynced_append_only_file_behind_a_password(
    services: dict[str, Any],
) -> None:
    redis = services["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command and "--appendfsync always" in command
    assert "--requirepass" in command
    assert "redis-cli ping" in " ".join(redis["healthcheck"]["test"])
    assert any(v.endswith(":/data") for v in redis["volumes"])


def test_bucket_is_created_before_the_fleet_starts(services: dict[str, Any]) -> None:
    init = services["minio-init"]
    assert "mc mb" in " ".join(init["entrypoint"]) and init["restart"] == "no"
    for name in ("api", *SYNTH_WORKERS, "callbacks"):
        depends = services[name]["depends_on"]
        assert depends["minio-init"]["condition"] == "service_completed_successfully", name
        assert depends["redis"]["condition"] == "service_healthy", name


@pytest.mark.parametrize("name", SYNTH_WORKERS)
def test_synth_workers_can_be_scaled(services: dict[str, Any], name: str) -> None:
    # A fixed container name or host port would make `--scale worker=N` fail.
    worker = services[name]
    assert "container_name" not in worker and "ports" not in worker
    assert worker["command"][:2] == ["ttsfleet", "worker"] and "--model" in worker["command"]
    assert worker["healthcheck"]["test"][1] == "ttsfleet-worker-alive"


def test_gpu_worker_reserves_one_gpu(services: dict[str, Any]) -> None:
    worker = services["worker"]
    [device] = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"] and device["count"] == 1
    assert worker["command"][worker["command"].index("--device") + 1] == "cuda:0"
    assert worker["build"]["dockerfile"] == "deploy/docker/Dockerfile.cuda"


def test_cpu_worker_only_runs_under_its_profile(services: dict[str, Any]) -> None:
    assert services["worker-cpu"]["profiles"] == ["cpu"]
    assert "profiles" not in services["worker"]


def test_callbacks_worker_runs_the_callbacks_queue(services: dict[str, Any]) -> None:
    assert services["callbacks"]["command"] == ["ttsfleet", "callbacks"]
    assert "deploy" not in services["callbacks"], "callbacks never hold a GPU"


def test_flower_watches_the_fleet_broker_behind_basic_auth(services: dict[str, Any]) -> None:
    flower = services["flower"]
    assert flower["command"][:4] == ["celery", "-A", "tasks", "flower"]
    environment = flower["environment"]
    assert (
        environment["TTSFLEET_REDIS_URL"] == services["worker"]["environment"]["TTSFLEET_REDIS_URL"]
    )
    user, _, password = environment["FLOWER_BASIC_AUTH"].partition(":")
    assert user and password
