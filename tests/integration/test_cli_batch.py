"""`ttsfleet batch` against the real API, dispatcher and a worker with the real voice."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from rich.console import Console

from client import batch
from client.client import ApiError, Client
from tasks.settings import Settings
from tests.conftest import API_KEYS, ROOT, ApiServer, WorkerProcess
from tests.helpers.speech import check_speech


def run_batch(api: ApiServer, lines: Path, out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TTSFLEET_API_URL": api.url, "TTSFLEET_API_KEY": API_KEYS["acme"]}
    return subprocess.run(
        [sys.executable, "-m", "fleet", "batch", str(lines), "--out-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_batch_downloads_each_line_skips_done_ones_and_reports_failures(
    start_api: Callable[..., ApiServer],
    start_worker: Callable[..., WorkerProcess],
    settings: Settings,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    api = start_api(settings)
    start_worker(settings, concurrency=1)
    lines = tmp_path / "lines.txt"
    lines.write_text(
        "Your order has shipped.\n"
        "\n"
        + json.dumps({"text": "It arrives on Thursday.", "format": "flac", "output": "day.flac"})
        + "\n?!\n"  # nothing pronounceable: fails with invalid_text
    )
    out = tmp_path / "out"  # (tmp_path / "audio" is the fleet's storage)
    first = run_batch(api, lines, out)
    assert first.returncode == 1, first.stderr
    assert "2 written, 0 already" in first.stderr and "1 failed" in first.stderr
    assert "line 4" in first.stderr and "invalid_text" in first.stderr
    assert sorted(p.name for p in out.iterdir()) == ["000001.wav", "day.flac"]
    check_speech((out / "000001.wav").read_bytes(), "wav", 22050, "Your order has shipped.")
    check_speech((out / "day.flac").read_bytes(), "flac", 22050, "It arrives on Thursday.")

    lines.write_text(lines.read_text().replace("?!", "Thank you."))
    second = run_batch(api, lines, out)
    assert second.returncode == 0, second.stderr
    assert "1 written, 2 already" in second.stderr and "0 failed" in second.stderr
    assert (out / "000004.wav").exists()
    # Three lines submitted the first time, one the second.
    assert redis_client.zcard("ttsfleet:tenant:acme:jobs") == 4


def test_a_refused_line_stops_the_batch_and_says_which_lines_were_submitted(
    api: ApiServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """All or none holds per call of up to 1000 lines: a line the API refuses stops the
    batch at its call, and the calls before it were submitted. No worker: jobs stay queued."""
    source = tmp_path / "lines.txt"
    source.write_text(
        "One.\nTwo.\nThree.\n" + json.dumps({"text": "Four.", "voice": "nobody"}) + "\nFive.\n"
    )
    lines = batch.read_lines(source, tmp_path / "out", {})
    said = io.StringIO()
    console = Console(file=said, width=400)
    with (
        Client(api.url, API_KEYS["acme"]) as client,
        pytest.raises(ApiError) as refused,
    ):
        batch.run_batch(client, lines, tmp_path / "out", console, chunk=2)
    assert refused.value.code == "unknown_voice" and refused.value.index == 1
    assert "line 4 was refused; the 2 lines before it (up to line 2) were submitted" in (
        said.getvalue()
    )
    assert redis_client.zcard("ttsfleet:tenant:acme:jobs") == 2

    with (
        Client(api.url, API_KEYS["acme"]) as client,
        pytest.raises(ApiError),
    ):
        batch.run_batch(client, lines[3:], tmp_path / "out", console, chunk=2)
    assert "line 4 was refused; nothing was submitted" in said.getvalue()
