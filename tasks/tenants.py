"""Tenants: who may call the API (keys), how their webhooks are signed, their limits."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasks.settings import Settings


class Tenant(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")
    api_keys: tuple[str, ...] = Field(min_length=1)
    webhook_secret: str | None = None
    # During a rotation both secrets sign (newest first).
    webhook_secrets: tuple[str, ...] = ()
    max_queued_jobs: int = 10000

    @model_validator(mode="after")
    def _one_secret_list(self) -> Tenant:
        if self.webhook_secret and not self.webhook_secrets:
            object.__setattr__(self, "webhook_secrets", (self.webhook_secret,))
        return self


class TenantsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenants: list[Tenant]


def derived_secret(tenant: str, key: str) -> str:
    """The webhook secret of an `API_KEYS` tenant: stable across restarts, never stored."""
    digest = hashlib.sha256(f"ttsfleet-webhook\x00{tenant}\x00{key}".encode()).digest()
    return "whsec_" + base64.b64encode(digest).decode()


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class TenantDirectory:
    """Finds the tenant of an API key; keys are compared as SHA-256 digests."""

    def __init__(self, tenants: list[Tenant]) -> None:
        self.tenants = {tenant.id: tenant for tenant in tenants}
        self._by_key = {_digest(key): tenant for tenant in tenants for key in tenant.api_keys}

    def by_key(self, key: str) -> Tenant | None:
        return self._by_key.get(_digest(key))

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
            tenants.append(
                Tenant(id=tenant_id, api_keys=(key,), webhook_secret=derived_secret(tenant_id, key))
            )
        return cls(tenants)
