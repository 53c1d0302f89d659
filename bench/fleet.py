"""A `ttsfleet up` fleet in a temporary home on free ports, for benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from client.client import Client
from client.env_file import read_env_file
from fleet.embedded import free_port

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def running_fleet(
    concurrency: int | None,
    device: str = "cpu",
    model: str | None = None,
    home: Path | None = None,
    **settings: str,
) -> Iterator[Client]:
    """The whole embedded fleet (Redis, API, dispatcher, worker, callbacks, Flower), its
    synth worker serving `model` on `device` with `concurrency` (None: the worker's
    default), in `home` (its logs stay there) or a temporary one."""
    with tempfile.TemporaryDirectory(prefix="ttsfleet-bench-") as tmp:
        home = home or Path(tmp)
        home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TTSFLEET_")}
        env.update(
            TTSFLEET_HOME=str(home),
            TTSFLEET_API_PORT=str(free_port()),
            TTSFLEET_FLOWER_PORT=str(free_port()),
            TTSFLEET_RATE_LIMIT_PER_S="0",
            **{f"TTSFLEET_{k.upper()}": v for k, v in settings.items()},
        )
        command = [sys.executable, "-m", "fleet", "up", "--device", device]
        command += ["--concurrency", str(concurrency)] if concurrency else []
        command += ["--model", model] if model else []
        up = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 120
            while not (home / "env").is_file():
                if up.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the fleet did not start; see {home}/*.log")
                time.sleep(0.2)
            saved = read_env_file(home / "env")
            client = Client(saved["TTSFLEET_API_URL"], saved["TTSFLEET_API_KEY"], timeout=120)
            # The worker loads its model after the API is ready: wait for a first job.
            client.wait(client.submit("Warm up.")["id"], timeout=120, poll_s=0.05)
            yield client
            client.close()
        finally:
            up.send_signal(signal.SIGINT)
            try:
                up.wait(60)
            except subprocess.TimeoutExpired:
                up.kill()
