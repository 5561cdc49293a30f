"""Bearer API keys: the key decides the tenant."""

from __future__ import annotations

import hashlib
import time
from typing import Annotated, Protocol

from cachetools import TTLCache
from fastapi import Depends, Request

from tally_db import Tenant
from tally_web.errors import ApiError


class TenantLookup(Protocol):
    async def tenant_for_api_key(self, key: str) -> Tenant | None: ...


class TenantCache:
    """API key → tenant, remembered for `ttl_s` so a busy poller costs no database query per
    request. A revoked key keeps working on this process for at most `ttl_s` (after the lookup
    that found it live); unknown keys are not remembered. At most `size` keys are held, the
    least recently used leaving first, as SHA-256 digests, never as themselves."""

    def __init__(self, lookup: TenantLookup, ttl_s: float = 10.0, size: int = 10_000) -> None:
        self._lookup = lookup
        self._ttl_s = ttl_s
        self._known: TTLCache[bytes, Tenant] = TTLCache(size, ttl_s, timer=time.monotonic)

    async def tenant_for_api_key(self, key: str) -> Tenant | None:
        digest = hashlib.sha256(key.encode()).digest()
        hit = self._known.get(digest)
        if hit is not None:
            return hit
        tenant = await self._lookup.tenant_for_api_key(key)
        if tenant is not None and self._ttl_s > 0:
            self._known[digest] = tenant
        return tenant


def bearer_key(request: Request) -> str | None:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" and key.strip() else None


async def tenant_of(request: Request, lookup: TenantLookup) -> Tenant:
    """The tenant of the request's `Authorization: Bearer <api key>`; 401 otherwise."""
    key = bearer_key(request)
    if key is None:
        raise ApiError(401, "unauthenticated", "send Authorization: Bearer <api key>")
    tenant = await lookup.tenant_for_api_key(key)
    if tenant is None:
        raise ApiError(401, "unauthenticated", "the API key is unknown or revoked")
    return tenant


async def _current_tenant(request: Request) -> Tenant:
    # Every HTTP service keeps its connections in app.state.deps, with the record store as
    # `store`; one that sets app.state.tenants (a TenantCache) answers from it.
    lookup: TenantLookup = (
        getattr(request.app.state, "tenants", None) or request.app.state.deps.store
    )
    return await tenant_of(request, lookup)


CurrentTenant = Annotated[Tenant, Depends(_current_tenant)]
