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
from tests.conftest import ROOT, RedisServer


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
