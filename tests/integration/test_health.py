"""`ttsfleet health ROLE`, the containers' health check, against each role that `ttsfleet up`
starts, run here as real processes: exit 0 while the role runs, 1 once it is stopped."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.settings import Settings
from tests.conftest import (
    ROOT,
    ApiServer,
    RedisServer,
    WorkerProcess,
    fleet_settings,
    free_port,
    settings_env,
    wait_until,
)
from tests.deploy.test_flower import start_flower, stop


@pytest.fixture
def settings(redis_server: RedisServer, tmp_path: Path) -> Iterator[Settings]:
    # Database 5: no other module's workers or dispatchers beat here.
    yield fleet_settings(redis_server, tmp_path, db=5, worker_heartbeat_s=0.5)


def health(settings: Settings, role: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "client.cli", "health", role, *extra],
        cwd=ROOT, env=settings_env(settings), capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def passes(settings: Settings, role: str, *extra: str) -> bool:
    return health(settings, role, *extra).returncode == 0


def spawn(settings: Settings, log: Path, *args: str) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "client.cli", *args],
            cwd=ROOT, env=settings_env(settings), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def test_api_health(settings: Settings) -> None:
    api = ApiServer(settings, dispatch=False)
    api.start()
    try:
        result = health(settings, "api", "--port", str(api.port))
        assert result.returncode == 0, result.stderr
    finally:
        api.stop()
    result = health(settings, "api", "--port", str(api.port), "--timeout", "2")
    assert result.returncode == 1 and "/readyz" in result.stderr


def test_worker_health_pings_its_own_node(settings: Settings, tmp_path: Path) -> None:
    worker = WorkerProcess(settings, tmp_path / "worker.log", concurrency=1)
    try:
        worker.wait_ready()
        wait_until(lambda: passes(settings, "worker"), timeout=30, interval=0.5)
        result = health(settings, "worker")
        assert "piper-joe-cpu@" in result.stdout and "answered ping" in result.stdout
        # Another host's check finds no node of its own, though this one runs.
        other = health(settings, "worker", "--host", "elsewhere.invalid")
        assert other.returncode == 1 and "no worker on elsewhere.invalid" in other.stderr
    finally:
        worker.stop()
    result = health(settings, "worker", "--timeout", "2")
    assert result.returncode == 1, result.stdout


@pytest.mark.parametrize(
    ("role", "args"),
    [("dispatcher", ["dispatcher"]), ("callbacks", ["callbacks"])],
)
def test_roles_without_a_celery_node_beat_in_redis(
    settings: Settings, tmp_path: Path, role: str, args: list[str]
) -> None:
    assert not passes(settings, role)
    proc = spawn(settings, tmp_path / f"{role}.log", *args)
    try:
        wait_until(lambda: proc.poll() is None and passes(settings, role), timeout=60, interval=0.5)
        assert f"{role} alive" in health(settings, role).stdout
    finally:
        stop(proc)
    result = health(settings, role)
    assert result.returncode == 1 and f"no {role} process" in result.stderr


def test_two_dispatchers_both_pass_while_one_holds_the_lease(
    settings: Settings, tmp_path: Path
) -> None:
    first = spawn(settings, tmp_path / "d1.log", "dispatcher")
    second = spawn(settings, tmp_path / "d2.log", "dispatcher")
    try:
        wait_until(lambda: passes(settings, "dispatcher"), timeout=60, interval=0.5)
        # Both beat: the standby's check must not depend on who holds the lease.
        wait_until(
            lambda: health(settings, "dispatcher").stdout.count("/") == 2, timeout=30, interval=0.5
        )
        stop(first)
        assert passes(settings, "dispatcher")
    finally:
        stop(first)
        stop(second)
    assert not passes(settings, "dispatcher")


def test_flower_health(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    flower = start_flower(settings, port, tmp_path / "flower.log")
    try:
        wait_until(
            lambda: passes(settings, "flower", "--port", str(port)), timeout=60, interval=0.5
        )
    finally:
        stop(flower)
    assert not passes(settings, "flower", "--port", str(port), "--timeout", "2")
