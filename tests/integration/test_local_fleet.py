"""Next to `make up`, the operator verbs find its fleet in `.ttsfleet/env` (its Redis on a
free port) with no TTSFLEET_* setting of their own: real Redis, the commands as processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import redis

from client.env_file import write_env_file
from tests.conftest import ROOT, ApiServer, RedisServer, fleet_settings, wait_until


def ttsfleet(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`ttsfleet ARGS` with no setting but where `make up` keeps its files."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TTSFLEET_")}
    return subprocess.run(
        [sys.executable, "-m", "fleet", *args], cwd=ROOT, env={**clean, "TTSFLEET_HOME": str(home)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_fleet_reads_the_redis_in_the_env_file_whatever_its_options(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    # A database of its own, empty: no queue waits, no worker beats.
    url = redis_server.url.rsplit("/", 1)[0] + "/10"
    redis.Redis.from_url(url).flushdb()
    write_env_file(tmp_path / "env", {"TTSFLEET_REDIS_URL": url})
    # --drain is parsed before the settings are read: it must not read them first.
    ran = ttsfleet(tmp_path, "fleet", "--json", "--drain", "5m")
    assert ran.returncode == 0, ran.stderr
    view = json.loads(ran.stdout)
    assert view["workers"] == [] and view["models"][0]["drain_s"] == 300


def test_health_checks_the_fleet_the_env_file_names(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """The API on a port of its own and the dispatcher's beat in the env file's Redis: found
    only through the file (the defaults are 127.0.0.1:8000 and redis on 6379)."""
    settings = fleet_settings(redis_server, tmp_path, db=10)
    redis.Redis.from_url(settings.redis_url).flushdb()
    api = ApiServer(settings)  # with its dispatcher, which beats as this host's
    api.start()
    try:
        home = tmp_path / "fleet"
        home.mkdir()
        assert ttsfleet(home, "health", "api", "--timeout", "2").returncode == 1
        write_env_file(
            home / "env",
            {"TTSFLEET_API_URL": api.url, "TTSFLEET_REDIS_URL": settings.redis_url,
             "TTSFLEET_API_PORT": str(api.port)},
        )  # fmt: skip
        ran = ttsfleet(home, "health", "api")
        assert ran.returncode == 0, ran.stderr
        assert f"127.0.0.1:{api.port}/readyz" in ran.stdout
        wait_until(
            lambda: ttsfleet(home, "health", "dispatcher").returncode == 0, timeout=30, interval=0.5
        )
    finally:
        api.stop()
