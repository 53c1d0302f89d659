"""Every TTSFLEET_* name in the deploy files is a real setting (a typo is silently ignored
by pydantic-settings, so nothing else would catch it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.settings import Settings
from tests.conftest import ROOT
from tests.deploy.manifests import DEPLOY_TEXT_FILES, SETTING_NAME


@pytest.mark.parametrize("path", DEPLOY_TEXT_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_ttsfleet_variable_names_a_setting(path: Path) -> None:
    fields = {name.upper() for name in Settings.model_fields}
    used = {name.removeprefix("TTSFLEET_") for name in SETTING_NAME.findall(path.read_text())}
    assert used - fields == set()


def test_deploy_files_do_use_settings() -> None:
    used = {n for p in DEPLOY_TEXT_FILES for n in SETTING_NAME.findall(p.read_text())}
    assert {"TTSFLEET_REDIS_URL", "TTSFLEET_STORAGE_URL", "TTSFLEET_MODELS"} <= used
