"""docker-compose.yml, checked without a container engine: the Compose Specification
schema (shipped by check-jsonschema, offline), and the properties the fleet relies on."""

from __future__ import annotations

import json
import os
import re
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
    role,
    up_roles,
    yaml_documents,
)

SYNTH_WORKERS = ("worker", "worker-cpu")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    [document] = yaml_documents(COMPOSE)
    return document


def filled_env() -> dict[str, str]:
    """The example env with every empty value filled in, as the operator must."""
    filled = {k: v or f"{k.lower()}-{'x' * 24}" for k, v in env_file(COMPOSE_ENV_EXAMPLE).items()}
    return {**filled, "FLOWER_BASIC_AUTH": "ops:" + "x" * 24}


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    resolved: dict[str, Any] = interpolate(compose, filled_env())["services"]
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


def test_the_example_env_copied_as_is_is_refused() -> None:
    # Every secret is empty in the example, and compose refuses an empty required variable.
    example = env_file(COMPOSE_ENV_EXAMPLE)
    secrets = {"REDIS_PASSWORD", "MINIO_ROOT_PASSWORD", "FLOWER_BASIC_AUTH", "TENANTS_FILE"}
    assert {name for name in secrets if example[name]} == set()
    assert secrets <= compose_required_variables(COMPOSE.read_text())
    with pytest.raises(KeyError, match="is required"):
        interpolate(yaml_documents(COMPOSE)[0], example)


def test_no_api_key_shorthand_and_the_tenants_file_is_mounted_where_read(
    services: dict[str, Any],
) -> None:
    # TTSFLEET_API_KEYS derives webhook secrets from keys: compose ships a tenants file.
    assert "TTSFLEET_API_KEYS" not in COMPOSE.read_text()
    for name in ("api", "callbacks"):
        service = services[name]
        target = service["environment"]["TTSFLEET_TENANTS_FILE"]
        assert any(v.endswith(f":{target}:ro") for v in service["volumes"]), name


def test_presigned_urls_name_the_published_object_store(services: dict[str, Any]) -> None:
    env = filled_env()
    public = services["api"]["environment"]["TTSFLEET_S3_PUBLIC_URL"]
    assert public == env["S3_PUBLIC_URL"] == f"http://127.0.0.1:{env['MINIO_PORT']}"
    assert f"127.0.0.1:{env['MINIO_PORT']}:9000" in services["minio"]["ports"]


def test_images_are_pinned_and_ttsfleet_images_can_be_built(services: dict[str, Any]) -> None:
    for name, service in services.items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", (name, image)
        if repository == "ttsfleet":  # built here, never pulled
            assert service["build"]["dockerfile"].startswith("deploy/docker/Dockerfile."), name
        else:  # pulled: a version, not a moving name
            assert re.search(r"\d+\.\d+|RELEASE\.\d{4}", tag), (name, image)


def test_compose_1_29_can_read_it(compose: dict[str, Any]) -> None:
    # docker-compose 1.29 (Debian's) rejects the top-level `name:` of Compose v2.
    assert "name" not in compose


def test_every_role_ttsfleet_up_starts_is_a_service(services: dict[str, Any]) -> None:
    roles = {role(service["command"]) for service in services.values() if "command" in service}
    assert up_roles() == {"api", "worker", "dispatcher", "callbacks", "flower"}
    assert up_roles() <= roles


def test_every_role_checks_its_own_health(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if (process := role(service.get("command", []))) is None:
            continue
        test = service["healthcheck"]["test"]
        assert test[:4] == ["CMD", "ttsfleet", "health", process], name


def test_two_dispatchers_run_one_lease(services: dict[str, Any]) -> None:
    dispatcher = services["dispatcher"]
    assert dispatcher["command"] == ["ttsfleet", "dispatcher"]
    assert dispatcher["scale"] == 2 and "profiles" not in dispatcher


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
    for name in ("api", "dispatcher", *SYNTH_WORKERS, "callbacks"):
        depends = services[name]["depends_on"]
        assert depends["minio-init"]["condition"] == "service_completed_successfully", name
        assert depends["redis"]["condition"] == "service_healthy", name


@pytest.mark.parametrize("name", SYNTH_WORKERS)
def test_synth_workers_can_be_scaled(services: dict[str, Any], name: str) -> None:
    # A fixed container name or host port would make `--scale worker=N` fail.
    worker = services[name]
    assert "container_name" not in worker and "ports" not in worker
    assert worker["command"][:2] == ["ttsfleet", "worker"] and "--model" in worker["command"]
    assert worker["healthcheck"]["test"][1:4] == ["ttsfleet", "health", "worker"]


def test_gpu_worker_reserves_one_gpu(services: dict[str, Any]) -> None:
    worker = services["worker"]
    [device] = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"] and device["count"] == 1
    assert worker["command"][worker["command"].index("--device") + 1] == "cuda:0"
    assert worker["build"]["dockerfile"] == "deploy/docker/Dockerfile.cuda"


def test_synth_workers_only_run_under_their_profiles(services: dict[str, Any]) -> None:
    # A plain `up` must not need a GPU: the GPU worker waits for `--profile gpu`.
    assert services["worker-cpu"]["profiles"] == ["cpu"]
    assert services["worker"]["profiles"] == ["gpu"]
    others = [name for name, s in services.items() if name not in SYNTH_WORKERS]
    assert [name for name in others if "profiles" in services[name]] == []


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
