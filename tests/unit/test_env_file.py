"""`.ttsfleet/env`, written by `make up`: a shell that sources it passes its settings to the
programs it starts, and every reader takes both its lines and older files' plain ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from client.client import credentials
from client.env_file import read_env_file, write_env_file

VALUES = {
    "TTSFLEET_API_URL": "http://127.0.0.1:8000",
    "TTSFLEET_API_KEY": "tf_abc-DEF_123",
    # A password with what a shell would otherwise split, expand or end a quote on.
    "TTSFLEET_REDIS_URL": "redis://:p@ss w'rd$HOME;#x@127.0.0.1:6379/0",
}


def test_a_sourced_file_exports_its_settings_to_a_python_child(tmp_path: Path) -> None:
    path = tmp_path / "env"
    write_env_file(path, VALUES)
    settings = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    assert all(line.startswith("export TTSFLEET_") for line in settings)
    show = f"import json, os; print(json.dumps({{k: os.environ.get(k) for k in {list(VALUES)}}}))"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TTSFLEET_")}
    ran = subprocess.run(
        ["bash", "-c", 'source "$1" && exec "$2" -c "$3"', "bash", str(path), sys.executable, show],
        env=clean, capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert json.loads(ran.stdout) == VALUES
    assert read_env_file(path) == VALUES
    # It holds an API key and maybe a password: its owner's alone.
    assert path.stat().st_mode & 0o077 == 0


def test_plain_lines_of_older_files_read_as_before(tmp_path: Path) -> None:
    path = tmp_path / "env"
    path.write_text(
        "TTSFLEET_API_URL=http://127.0.0.1:8000\n"
        "# a comment\n\n"
        "TTSFLEET_API_KEY=tf_abc-DEF_123\n"
        "export\tTTSFLEET_REDIS_URL='redis://127.0.0.1:6379/0'\n"
        "not a setting\n"
    )
    assert read_env_file(path) == {
        "TTSFLEET_API_URL": "http://127.0.0.1:8000",
        "TTSFLEET_API_KEY": "tf_abc-DEF_123",
        "TTSFLEET_REDIS_URL": "redis://127.0.0.1:6379/0",
    }


@pytest.mark.parametrize("export", ["", "export "], ids=["plain", "export"])
def test_the_client_finds_its_api_in_either_kind_of_file(
    export: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TTSFLEET_API_URL", raising=False)
    monkeypatch.delenv("TTSFLEET_API_KEY", raising=False)
    (tmp_path / "env").write_text(
        f"{export}TTSFLEET_API_URL=http://127.0.0.1:8001\n{export}TTSFLEET_API_KEY=tf_k\n"
    )
    assert credentials(tmp_path) == ("http://127.0.0.1:8001", "tf_k")
