"""`celery -A tasks worker`, Celery's own command with no ttsfleet launcher, runs jobs: the
app is found through `tasks.celery`, and the model loads in each prefork child."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tasks import keys
from tasks.settings import Settings
from tests.conftest import ROOT, ApiServer, settings_env, wait_until


def test_celerys_own_worker_command_synthesizes_a_job(
    settings: Settings, start_api: Callable[..., ApiServer], tmp_path: Path
) -> None:
    api = start_api(settings)
    log = tmp_path / "celery.log"
    queue = keys.synth_queue(next(iter(settings.models)))
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q", queue, "-c", "1",
             "-P", "prefork", "--without-mingle", "--without-gossip", "-l", "INFO"],
            cwd=ROOT, env=settings_env(settings), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        with api.client() as http:
            job = http.post("/v1/jobs", json={"text": "Celery runs this one."}).json()

            def finished() -> dict[str, object] | None:
                assert worker.poll() is None, log.read_text()[-3000:]
                current: dict[str, object] = http.get(f"/v1/jobs/{job['id']}").json()
                return current if current["status"] in ("succeeded", "failed") else None

            done = wait_until(finished, timeout=90, interval=0.1)
        assert done["status"] == "succeeded", done
        assert "loaded on cpu" in log.read_text()
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
