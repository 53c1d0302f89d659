"""Pieces of the embedded fleet that need no processes."""

from __future__ import annotations

import json
from pathlib import Path

from fleet.embedded import dev_tenant, not_sourced, own_redis_record
from tasks.settings import Settings
from tasks.tenants import TenantDirectory


def test_dev_key_is_kept_across_restarts(tmp_path: Path) -> None:
    path, key = dev_tenant(tmp_path)
    assert dev_tenant(tmp_path) == (path, key)
    tenant = json.loads(path.read_text())["tenants"][0]
    assert tenant["id"] == "dev" and tenant["webhook_secret"].startswith("whsec_")
    assert path.stat().st_mode & 0o077 == 0


def test_tenants_file_and_shorthand_keys_both_authenticate(tmp_path: Path) -> None:
    path, key = dev_tenant(tmp_path)
    directory = TenantDirectory.from_settings(
        Settings(tenants_file=path, api_keys="acme:k1,globex:k2")
    )
    assert directory.by_key(key).id == "dev"  # type: ignore[union-attr]
    assert directory.by_key("k2").id == "globex"  # type: ignore[union-attr]
    assert directory.by_key("k3") is None
    acme = directory.by_key("k1")
    # No secret is derived from a key: a shorthand tenant has none (and so no callbacks).
    assert acme is not None and acme.webhook_secrets == ()


def test_up_does_not_take_its_own_last_redis_for_the_users(tmp_path: Path) -> None:
    """A shell that ran `source .ttsfleet/env` exports the Redis the last `up` started; the
    next `up` from that shell starts its own again instead of waiting on a stopped server."""
    (tmp_path / "redis").mkdir()
    own_redis_record(tmp_path).write_text("redis://127.0.0.1:41234/0")
    sourced = {"TTSFLEET_REDIS_URL": "redis://127.0.0.1:41234/0", "PATH": "/bin"}
    assert not_sourced(sourced, tmp_path) == {"PATH": "/bin"}
    users = {"TTSFLEET_REDIS_URL": "redis://127.0.0.1:6379/0"}
    assert not_sourced(users, tmp_path) == users
    assert not_sourced(sourced, tmp_path / "elsewhere") == sourced
