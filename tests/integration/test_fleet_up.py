"""`ttsfleet up` (what `make up` runs): the whole fleet starts, serves, and Ctrl-C stops
every process it started."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from client.env_file import read_env_file
from client.webhooks import verify_webhook
from tests.conftest import ROOT, free_port, wait_until
from tests.helpers.receivers import Receiver


def descendants(pid: int) -> set[int]:
    """Every live process below `pid`, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_up_serves_speech_and_ctrl_c_leaves_nothing(tmp_path: Path) -> None:
    home = tmp_path / "fleet"
    api_port, flower_port = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TTSFLEET_")},
        "TTSFLEET_HOME": str(home),
        "TTSFLEET_API_PORT": str(api_port),
        "TTSFLEET_FLOWER_PORT": str(flower_port),
    }
    up = subprocess.Popen(
        [sys.executable, "-m", "fleet", "up", "--concurrency", "1"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        wait_until(lambda: (home / "env").is_file(), timeout=90, interval=0.2)
        saved = read_env_file(home / "env")
        # `source .ttsfleet/env` exports every setting to what the shell starts next.
        assert (home / "env").read_text().count("\nexport TTSFLEET_") == len(saved)
        assert saved["TTSFLEET_API_URL"] == f"http://127.0.0.1:{api_port}"
        key = saved["TTSFLEET_API_KEY"]
        assert httpx.get(f"http://127.0.0.1:{api_port}/readyz").status_code == 200
        wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{flower_port}/healthcheck").text == "OK",
            timeout=30,
        )

        # The CLI finds the API and key in .ttsfleet/env by itself.
        out = tmp_path / "hi.ogg"
        cli_env = {
            k: v for k, v in env.items() if k not in ("TTSFLEET_API_PORT", "TTSFLEET_FLOWER_PORT")
        }
        say = subprocess.run(
            [sys.executable, "-m", "fleet", "say", "Hello from the embedded fleet.", "-o", str(out)],
            cwd=ROOT, env=cli_env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert say.returncode == 0, say.stderr
        assert out.stat().st_size > 1000 and "ogg" in say.stdout
        assert list((home / "audio" / "dev").glob("*.ogg"))
        assert (home / "redis" / "appendonlydir").is_dir()
        # The callbacks worker delivers to a loopback receiver: make up allows loopback.
        receiver = Receiver().start()
        try:
            job = httpx.post(
                f"http://127.0.0.1:{api_port}/v1/jobs",
                json={"text": "Call me back.", "callback_url": receiver.url},
                headers={"Authorization": f"Bearer {key}"},
            ).json()
            wait_until(lambda: receiver.received, timeout=60, interval=0.1)
            secret = json.loads((home / "tenants.json").read_text())["tenants"][0]
            got = receiver.received[0]
            verify_webhook(secret["webhook_secret"], got.headers, got.body)
            assert json.loads(got.body)["data"]["id"] == job["id"]
        finally:
            receiver.stop()

        # `ttsfleet fleet` finds the embedded Redis in .ttsfleet/env and sees the worker.
        def fleet_workers() -> list[dict[str, object]]:
            result = subprocess.run(
                [sys.executable, "-m", "fleet", "fleet", "--json"],
                cwd=ROOT, env=cli_env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
            workers: list[dict[str, object]] = json.loads(result.stdout)["workers"]
            return workers

        # The heartbeat counts both jobs (say, callback) once its next beat (every 5 s) is written.
        (worker,) = wait_until(
            lambda: [w for w in fleet_workers() if w["jobs_done"] == 2], timeout=30, interval=0.5
        )
        assert worker["model"] == "piper-joe" and worker["device"] == "cpu"

        # `ttsfleet health` finds every role of this fleet (its ports, its Redis) the same way.
        for role in ("api", "flower", "worker", "dispatcher", "callbacks"):
            health = subprocess.run(
                [sys.executable, "-m", "fleet", "health", role, "--timeout", "10"],
                cwd=ROOT, env=cli_env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert health.returncode == 0, (role, health.stderr)

        # Draining the one worker restarts it, as a container's restart policy would: the
        # fleet goes on and serves the next job.
        drain = subprocess.run(
            [sys.executable, "-m", "fleet", "fleet", "drain", str(worker["node"])],
            cwd=ROOT, env=cli_env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert drain.returncode == 0, drain.stderr
        again = subprocess.run(
            [sys.executable, "-m", "fleet", "say", "Still here.", "-o", str(tmp_path / "b.wav")],
            cwd=ROOT, env=cli_env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert again.returncode == 0, again.stderr
        assert up.poll() is None

        tree = descendants(up.pid)
        assert len(tree) >= 6  # redis, api, worker (+ child), callbacks, flower
        up.send_signal(signal.SIGINT)
        output, _ = up.communicate(timeout=60)
        assert up.returncode == 0, output
        assert "stopped." in output and key in output
        assert "worker shut down (a drain); starting a new one" in output
        wait_until(lambda: not any(alive(pid) for pid in tree), timeout=10)
    finally:
        if up.poll() is None:
            # A failed run must not leave its fleet behind: SIGKILL the whole tree.
            for pid in descendants(up.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            up.kill()
            up.wait()
