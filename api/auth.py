"""Bearer API keys: each key belongs to one tenant, and a tenant sees only its own jobs."""

from __future__ import annotations

from fastapi import Request

from api.errors import Unauthorized
from tasks.tenants import Tenant, TenantDirectory


async def authenticate(request: Request) -> Tenant:
    """FastAPI dependency: the tenant of the request's `Authorization: Bearer` key.

    `async` though it awaits nothing: FastAPI runs a plain `def` dependency in a worker
    thread, which cost a submit more than its Redis round trip (bench.api's profile)."""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("send 'Authorization: Bearer <api key>'")
    directory: TenantDirectory = request.app.state.tenants
    tenant = directory.by_key(key.strip())
    if tenant is None:
        raise Unauthorized("the API key is not valid")
    return tenant
