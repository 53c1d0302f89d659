"""Tenants: who may call the API (keys), how their webhooks are signed, their limits.

A tenant's webhook secret comes from the tenants file only: none is derived from a key, so a
`TTSFLEET_API_KEYS` shorthand tenant has none and cannot ask for callbacks (every callback
is signed). `weak_secrets` lists the keys, secrets and Redis password that must not run a
production fleet; `refuse_weak_secrets` is what each process calls at start-up.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasks.redis_url import sentinel_target
from tasks.settings import Settings

log = logging.getLogger(__name__)

MIN_API_KEY_CHARS = 16
MIN_SECRET_BYTES = 24
# Values copied from an example and never changed, refused whatever their length: any value
# containing one of the first, or equal to one of the second.
PLACEHOLDER_PARTS = ("change-me", "changeme", "change_me", "replace-me", "replaceme", "example",
                     "placeholder", "xxxxxxxx")  # fmt: skip
PLACEHOLDER_WORDS = ("secret", "password", "redis", "default", "test", "admin")


class Tenant(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")
    api_keys: tuple[str, ...] = Field(min_length=1)
    webhook_secret: str | None = None
    # During a rotation both secrets sign (newest first).
    webhook_secrets: tuple[str, ...] = ()
    max_queued_jobs: int = 10000
    # Result-cache hits cross tenants only between tenants that both set this (worker.cache):
    # a shared hit tells one tenant, by its speed and its sha256, what another synthesized.
    share_result_cache: bool = False

    @model_validator(mode="after")
    def _one_secret_list(self) -> Tenant:
        if self.webhook_secret and not self.webhook_secrets:
            object.__setattr__(self, "webhook_secrets", (self.webhook_secret,))
        return self


class TenantsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenants: list[Tenant]


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class TenantDirectory:
    """Finds the tenant of an API key; keys are compared as SHA-256 digests."""

    def __init__(self, tenants: list[Tenant]) -> None:
        self.tenants = {tenant.id: tenant for tenant in tenants}
        self._by_key = {_digest(key): tenant for tenant in tenants for key in tenant.api_keys}

    def by_key(self, key: str) -> Tenant | None:
        return self._by_key.get(_digest(key))

    def sharing_result_cache(self) -> frozenset[str]:
        """The tenants whose result-cache hits may cross to each other."""
        return frozenset(t.id for t in self.tenants.values() if t.share_result_cache)

    @classmethod
    def from_settings(cls, settings: Settings) -> TenantDirectory:
        tenants: list[Tenant] = []
        if settings.tenants_file is not None:
            raw = json.loads(Path(settings.tenants_file).read_text())
            tenants += TenantsFile.model_validate(raw).tenants
        for pair in filter(None, (settings.api_keys or "").split(",")):
            tenant_id, sep, key = pair.strip().partition(":")
            if not sep or not key:
                raise ValueError("TTSFLEET_API_KEYS is tenant:key[,tenant2:key2]")
            # No webhook secret: none is derived from a key (a key leaks more often).
            tenants.append(Tenant(id=tenant_id, api_keys=(key,)))
        return cls(tenants)


class WeakSecrets(SystemExit):
    """A production process refuses to start with a weak key, secret or Redis password."""


def is_placeholder(value: str) -> bool:
    """True for a value copied from an example (`change-me`, `whsec_example`, ...)."""
    bare = value.lower().removeprefix("whsec_")
    return bare in PLACEHOLDER_WORDS or any(part in bare for part in PLACEHOLDER_PARTS)


def secret_bytes(secret: str) -> bytes | None:
    """The key a `whsec_<base64>` secret signs with, or None if it is not base64."""
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        return None


def weak_secrets(settings: Settings, directory: TenantDirectory) -> list[str]:
    """One line per weak setting, naming it (never showing the value)."""
    where = f"TTSFLEET_TENANTS_FILE ({settings.tenants_file})"
    problems: list[str] = []
    for tenant in directory.tenants.values():
        source = where if settings.tenants_file else "TTSFLEET_API_KEYS"
        for n, key in enumerate(tenant.api_keys):
            if len(key) < MIN_API_KEY_CHARS or is_placeholder(key):
                problems.append(
                    f"{source}: tenant {tenant.id!r} api key #{n + 1} is a placeholder or "
                    f"shorter than {MIN_API_KEY_CHARS} characters"
                )
        for n, secret in enumerate(tenant.webhook_secrets):
            decoded = secret_bytes(secret)
            if decoded is None or len(decoded) < MIN_SECRET_BYTES or is_placeholder(secret):
                problems.append(
                    f"{where}: tenant {tenant.id!r} webhook secret #{n + 1} is a placeholder, "
                    f"not base64 or shorter than {MIN_SECRET_BYTES} bytes decoded"
                )
    password = urlsplit(settings.redis_url).password
    if password is not None and is_placeholder(password):
        problems.append("TTSFLEET_REDIS_URL: the Redis password is a placeholder")
    target = sentinel_target(settings.redis_url)
    if target and target.sentinel_password is not None and is_placeholder(target.sentinel_password):
        problems.append("TTSFLEET_REDIS_URL: the sentinels' password is a placeholder")
    return problems


def refuse_weak_secrets(settings: Settings, directory: TenantDirectory | None = None) -> None:
    """Refuse to start (outside `make up`) on a weak key, secret or Redis password; under
    `TTSFLEET_DEV_MODE` (what `make up` sets) only warn."""
    directory = directory or TenantDirectory.from_settings(settings)
    problems = weak_secrets(settings, directory)
    if not problems:
        return
    if settings.dev_mode:
        for problem in problems:
            log.warning("%s (allowed: TTSFLEET_DEV_MODE)", problem)
        return
    raise WeakSecrets(
        "refusing to start with weak secrets:\n  "
        + "\n  ".join(problems)
        + "\n(TTSFLEET_DEV_MODE=true, as `make up` sets, turns these into warnings)"
    )
