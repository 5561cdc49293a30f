"""What handlers get: the service's connections in one frozen bundle, and the caller's tenant."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from tally_bus import Bus
from tally_db import OutboxRelay, Store, Tenant
from tally_storage import ObjectStore
from tally_upload._errors import ApiError
from tally_upload.config import Settings


@dataclass(frozen=True, slots=True)
class Deps:
    settings: Settings
    store: Store
    objects: ObjectStore
    bus: Bus
    relay: OutboxRelay


def get_deps(request: Request) -> Deps:
    deps: Deps = request.app.state.deps
    return deps


DepsDep = Annotated[Deps, Depends(get_deps)]


async def current_tenant(request: Request, deps: DepsDep) -> Tenant:
    """The tenant of the request's `Authorization: Bearer <api key>`; 401 otherwise."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(401, "unauthenticated", "send Authorization: Bearer <api key>")
    tenant = await deps.store.tenant_for_api_key(key.strip())
    if tenant is None:
        raise ApiError(401, "unauthenticated", "the API key is unknown or revoked")
    return tenant


CurrentTenant = Annotated[Tenant, Depends(current_tenant)]
