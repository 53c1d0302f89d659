"""Weak secrets: outside `make up` every process refuses to start on a short or
placeholder API key, webhook secret or Redis password, naming the setting; under
`TTSFLEET_DEV_MODE` (what `make up` sets) they are warned about."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from fleet.embedded import fleet_env, shown
from tasks.settings import Settings
from tasks.tenants import TenantDirectory, weak_secrets
from tests.conftest import ROOT, free_port, settings_env, wait_until

STRONG_KEY = "k-0123456789abcdef0123"
STRONG_SECRET = "whsec_" + base64.b64encode(b"x" * 32).decode()


def tenants_file(tmp_path: Path, key: str = STRONG_KEY, secret: str = STRONG_SECRET) -> Path:
    path = tmp_path / "tenants.json"
    path.write_text(json.dumps({"tenants": [
        {"id": "acme", "api_keys": [key], "webhook_secret": secret}
    ]}))  # fmt: skip
    return path


@pytest.mark.parametrize(
    ("key", "secret", "redis_url", "named"),
    [
        ("short-key", STRONG_SECRET, None, "api key #1"),
        ("change-me-0123456789abcdef", STRONG_SECRET, None, "api key #1"),
        ("example-key-0123456789abcdef", STRONG_SECRET, None, "api key #1"),
        (STRONG_KEY, "whsec_" + base64.b64encode(b"x" * 23).decode(), None, "webhook secret"),
        (STRONG_KEY, "whsec_changeme", None, "webhook secret"),
        (STRONG_KEY, "whsec_not base64!", None, "webhook secret"),
        (STRONG_KEY, STRONG_SECRET, "redis://:change-me@127.0.0.1:6399/0", "TTSFLEET_REDIS_URL"),
        (
            STRONG_KEY,
            STRONG_SECRET,
            "redis://default:secret@127.0.0.1:6399/0",
            "TTSFLEET_REDIS_URL",
        ),
    ],
)
def test_weak_settings_are_named(
    tmp_path: Path, key: str, secret: str, redis_url: str | None, named: str
) -> None:
    settings = Settings(
        tenants_file=tenants_file(tmp_path, key, secret),
        redis_url=redis_url or "redis://127.0.0.1:6399/0",
    )
    [problem] = weak_secrets(settings, TenantDirectory.from_settings(settings))
    assert named in problem
    assert (key not in problem or key == STRONG_KEY) and secret not in problem


def test_strong_settings_pass(tmp_path: Path) -> None:
    settings = Settings(
        tenants_file=tenants_file(tmp_path),
        redis_url="redis://:a-long-random-password-9f8e7d@127.0.0.1:6399/0",
    )
    assert weak_secrets(settings, TenantDirectory.from_settings(settings)) == []


@pytest.mark.parametrize("verb", ["api", "dispatcher", "callbacks", "worker"])
def test_every_process_refuses_to_start_on_a_weak_key(
    make_settings: Callable[..., Settings], verb: str
) -> None:
    env = {
        **settings_env(make_settings(api_keys="acme:short")),
        "TTSFLEET_DEV_MODE": "false",
    }
    args = [sys.executable, "-m", "fleet", verb]
    if verb == "api":
        args += ["--port", str(free_port())]
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "TTSFLEET_API_KEYS: tenant 'acme' api key #1" in done.stderr, done.stderr[-2000:]


def test_dev_mode_warns_and_serves(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    env = {**settings_env(make_settings(api_keys="acme:short")), "TTSFLEET_DEV_MODE": "true"}
    port = free_port()
    log = tmp_path / "api.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fleet", "api", "--port", str(port)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(url + "/healthz").status_code == 200, timeout=30)
        ok = httpx.get(url + "/v1/voices", headers={"Authorization": "Bearer short"})
        assert ok.status_code == 200
    finally:
        proc.terminate()
        proc.wait(20)
    assert "api key #1" in log.read_text() and "TTSFLEET_DEV_MODE" in log.read_text()


def test_make_up_keeps_what_the_user_set(tmp_path: Path) -> None:
    user = {
        "TTSFLEET_TENANTS_FILE": "/srv/tenants.json",
        "TTSFLEET_REDIS_URL": "redis://:pw-9f8e7d6c@10.0.0.5:6379/2",
        "PATH": "/usr/bin",
    }
    env, taken = fleet_env(user, tmp_path, "redis://127.0.0.1:4000/0", tmp_path / "t.json")
    assert taken == ["TTSFLEET_REDIS_URL", "TTSFLEET_TENANTS_FILE"]
    assert env["TTSFLEET_TENANTS_FILE"] == "/srv/tenants.json"
    assert env["TTSFLEET_REDIS_URL"] == user["TTSFLEET_REDIS_URL"]
    assert env["TTSFLEET_STORAGE_URL"] == "file://" + str(tmp_path / "audio")
    assert env["TTSFLEET_CALLBACK_ALLOWED_NETWORKS"] == "127.0.0.0/8,::1/128"
    assert env["TTSFLEET_DEV_MODE"] == "true"
    assert "pw-9f8e7d6c" not in shown("TTSFLEET_REDIS_URL", env["TTSFLEET_REDIS_URL"])
    env, taken = fleet_env({}, tmp_path, "redis://127.0.0.1:4000/0", tmp_path / "t.json")
    assert taken == [] and env["TTSFLEET_TENANTS_FILE"] == str(tmp_path / "t.json")
