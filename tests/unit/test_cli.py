"""The `ttsfleet` command as a user meets it: help on every option, a version, distinct exit
codes, and a one-line message (no traceback) when the API or Redis cannot be reached."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from client import cli
from fleet.cli import register
from tests.conftest import ROOT, free_port


def subparsers(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                for inner, deeper in subparsers(sub):
                    yield f"{name} {inner}", deeper


def test_every_verb_and_option_has_help() -> None:
    root = cli.parser([register])
    verbs = dict(subparsers(root))
    assert {"say", "batch", "status", "cancel", "voices", "jobs"} <= verbs.keys()
    assert set(cli.SERVER_VERBS) - {"health"} <= verbs.keys()
    for name, sub in verbs.items():
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            assert action.help, f"`ttsfleet {name}` option {action.option_strings or action.dest}"


def test_help_holds_no_internal_notes() -> None:
    text = cli.parser([register]).format_help()
    assert "Exit codes" in text and "import" not in text and "os.environ" not in text


def ttsfleet(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TTSFLEET_")}
    return subprocess.run(
        [sys.executable, "-m", "fleet", *args], cwd=ROOT, env={**clean, **env},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_version_prints_the_installed_version() -> None:
    ran = ttsfleet("--version")
    assert ran.returncode == 0 and ran.stdout.startswith("ttsfleet ")


def test_a_usage_error_exits_2() -> None:
    ran = ttsfleet("say")
    assert ran.returncode == cli.RET_USAGE and "usage:" in ran.stderr


def test_an_unreachable_api_is_one_line_and_exit_4(tmp_path: object) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    ran = ttsfleet("status", "01ABC", TTSFLEET_API_URL=url, TTSFLEET_API_KEY="k" * 20)
    assert ran.returncode == cli.RET_UNREACHABLE
    assert ran.stderr.strip().count("\n") == 0 and "Traceback" not in ran.stderr
    assert f"cannot reach the API at {url}" in ran.stderr


def test_an_unreachable_redis_is_one_line_and_exit_4() -> None:
    url = f"redis://:hunter2hunter2@127.0.0.1:{free_port()}/0"
    ran = ttsfleet("fleet", "--json", TTSFLEET_REDIS_URL=url, TTSFLEET_HOME="/nonexistent")
    assert ran.returncode == 4
    assert ran.stderr.strip().count("\n") == 0 and "Traceback" not in ran.stderr
    assert "cannot reach Redis" in ran.stderr and "hunter2" not in ran.stderr


def test_without_configuration_the_user_is_told_what_to_set() -> None:
    ran = ttsfleet("status", "01ABC", TTSFLEET_HOME="/nonexistent")
    assert ran.returncode == cli.RET_USAGE
    assert "TTSFLEET_API_URL" in ran.stderr and "Traceback" not in ran.stderr
    # No request was made, so there is no status code to show.
    assert ran.stderr.startswith("ttsfleet: not_configured: ")


def unreachable_api() -> dict[str, str]:
    """A configured API that nothing serves: a verb that asks it exits 4, not 2."""
    return {"TTSFLEET_API_URL": f"http://127.0.0.1:{free_port()}", "TTSFLEET_API_KEY": "k" * 20}


def assert_one_line_usage_error(ran: subprocess.CompletedProcess[str]) -> None:
    assert ran.returncode == cli.RET_USAGE, ran.stderr
    assert ran.stderr.strip().count("\n") == 0 and "Traceback" not in ran.stderr


def test_a_missing_batch_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "nonexist.txt"
    ran = ttsfleet("batch", str(missing), "--out-dir", str(tmp_path / "d"), **unreachable_api())
    assert_one_line_usage_error(ran)
    assert str(missing) in ran.stderr


def test_a_malformed_batch_line_is_exit_2_before_anything_is_submitted(tmp_path: Path) -> None:
    lines = tmp_path / "lines.txt"
    lines.write_text('Hello.\n{"text": \nBye.\n')
    ran = ttsfleet("batch", str(lines), "--out-dir", str(tmp_path / "d"), **unreachable_api())
    # Exit 2, not 4: the file is read whole before the API is asked anything.
    assert_one_line_usage_error(ran)
    assert f"{lines}:2: not a JSON object" in ran.stderr


def test_say_refuses_an_extension_it_cannot_name_the_format_of(tmp_path: Path) -> None:
    out = tmp_path / "x.xyz"
    ran = ttsfleet("say", "Hi", "-o", str(out), **unreachable_api())
    assert_one_line_usage_error(ran)
    assert ".wav" in ran.stderr and ".mp3" in ran.stderr and "--format" in ran.stderr
    assert not out.exists()
    # With --format the name is the user's choice: the API is asked (and not reached).
    named = ttsfleet("say", "Hi", "-o", str(out), "--format", "wav", **unreachable_api())
    assert named.returncode == cli.RET_UNREACHABLE


def test_say_into_a_missing_folder_is_refused_before_synthesizing(tmp_path: Path) -> None:
    ran = ttsfleet("say", "Hi", "-o", str(tmp_path / "no" / "x.wav"), **unreachable_api())
    assert_one_line_usage_error(ran)
    assert str(tmp_path / "no") in ran.stderr


def test_a_drain_target_that_is_no_duration_is_a_usage_error() -> None:
    ran = ttsfleet("fleet", "--drain", "bogus", TTSFLEET_HOME="/nonexistent")
    assert ran.returncode == cli.RET_USAGE and "Traceback" not in ran.stderr
    assert "usage: ttsfleet fleet" in ran.stderr and "not a duration: 'bogus'" in ran.stderr


def test_worker_callbacks_with_a_device_is_a_usage_error() -> None:
    ran = ttsfleet("worker", "--callbacks", "--device", "cuda:0", TTSFLEET_HOME="/nonexistent")
    assert_one_line_usage_error(ran)
    assert "--callbacks runs on its own" in ran.stderr


@pytest.mark.parametrize("verb", ["worker", "dispatcher", "up"])
def test_server_verbs_are_refused_with_the_install_hint_when_no_server_registers(
    verb: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "server_registrars", lambda: ([], "celery"))
    assert cli.main([verb]) == cli.RET_USAGE
    assert "pip install 'ttsfleet[server]'" in capsys.readouterr().err
