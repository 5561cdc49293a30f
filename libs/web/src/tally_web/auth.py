"""Bearer API keys: the key decides the tenant."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tally_db import Store, Tenant
from tally_web.errors import ApiError


async def tenant_of(request: Request, store: Store) -> Tenant:
    """The tenant of the request's `Authorization: Bearer <api key>`; 401 otherwise."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(401, "unauthenticated", "send Authorization: Bearer <api key>")
    tenant = await store.tenant_for_api_key(key.strip())
    if tenant is None:
        raise ApiError(401, "unauthenticated", "the API key is unknown or revoked")
    return tenant


async def _current_tenant(request: Request) -> Tenant:
    # Every HTTP service keeps its connections in app.state.deps, with the record store as `store`.
    store: Store = request.app.state.deps.store
    return await tenant_of(request, store)


CurrentTenant = Annotated[Tenant, Depends(_current_tenant)]
