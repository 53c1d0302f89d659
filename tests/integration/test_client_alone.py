"""The client installs and works alone: a venv with only the client's own dependencies
runs `ttsfleet say` against a running fleet and verifies a signed callback."""

from __future__ import annotations

import json
import os
import subprocess
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.webhooks import signature_header
from tests.conftest import API_KEYS, ROOT, ApiServer, RedisServer, fleet_settings, serving

pytestmark = pytest.mark.timeout(600)  # building the venv takes a minute or two

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # base64 of 24 bytes


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv holding the client part alone: `pip install .` without the server extra."""
    home = tmp_path_factory.mktemp("client-venv") / "venv"
    venv.create(home, with_pip=True)
    pip = [str(home / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    result = subprocess.run(
        [*pip, "install", str(ROOT)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return home


@pytest.fixture(scope="module")
def fleet(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    tmp = tmp_path_factory.mktemp("client-alone")
    with serving(fleet_settings(redis_server, tmp, db=6), tmp / "worker.log") as (api, _):
        yield api


def run_in(
    home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TTSFLEET_", "PYTHON"))}
    return subprocess.run(
        list(args), cwd=home.parent, env={**clean, **(env or {})}, capture_output=True,
        text=True, timeout=180,
    )  # fmt: skip


def test_the_client_venv_holds_no_server_dependency(client_venv: Path) -> None:
    python = str(client_venv / "bin" / "python")
    for module in ("celery", "redis", "fastapi", "boto3", "numpy"):
        found = run_in(client_venv, python, "-c", f"import {module}")
        assert found.returncode != 0, f"{module} is installed beside the client"
    assert run_in(client_venv, python, "-c", "import client, httpx, rich").returncode == 0


def test_the_client_alone_says_a_text_into_a_wav(client_venv: Path, fleet: ApiServer) -> None:
    out = client_venv.parent / "hello.wav"
    said = run_in(
        client_venv, str(client_venv / "bin" / "ttsfleet"), "say", "Hello from the client.",
        "-o", str(out),
        env={"TTSFLEET_API_URL": fleet.url, "TTSFLEET_API_KEY": API_KEYS["acme"]},
    )  # fmt: skip
    assert said.returncode == 0, said.stderr
    assert "wav at 22050 Hz" in said.stdout
    assert out.read_bytes()[:4] == b"RIFF"


def test_server_verbs_without_the_server_say_what_to_install(client_venv: Path) -> None:
    ran = run_in(client_venv, str(client_venv / "bin" / "ttsfleet"), "worker")
    assert ran.returncode == 2
    assert "pip install 'ttsfleet[server]'" in ran.stderr
    assert "Traceback" not in ran.stderr


def test_the_client_alone_verifies_a_signed_callback(client_venv: Path) -> None:
    body = json.dumps({"type": "job.succeeded", "data": {"id": "j1"}}).encode()
    timestamp = int(__import__("time").time())
    headers = {
        "webhook-id": "msg_j1_succeeded",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header([SECRET], "msg_j1_succeeded", timestamp, body),
    }
    check = (
        "import json, sys\n"
        "from client import verify_webhook, WebhookVerificationError\n"
        "headers, body = json.loads(sys.argv[1]), sys.argv[2].encode()\n"
        f"verify_webhook({SECRET!r}, headers, body)\n"
        "try:\n"
        f"    verify_webhook({SECRET!r}, headers, body + b' ')\n"
        "except WebhookVerificationError as exc:\n"
        "    print(exc.code)\n"
    )
    python = str(client_venv / "bin" / "python")
    ran = run_in(client_venv, python, "-c", check, json.dumps(headers), body.decode())
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "webhook_bad_signature"
