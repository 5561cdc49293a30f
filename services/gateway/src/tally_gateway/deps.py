"""What handlers get: the service's connections in one frozen bundle, and the caller's tenant."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from redis.asyncio import Redis

from tally_db import Store, Tenant
from tally_gateway.config import Settings
from tally_storage import ObjectStore
from tally_web import tenant_of


@dataclass(frozen=True, slots=True)
class Deps:
    settings: Settings
    store: Store
    redis: Redis
    objects: ObjectStore


def get_deps(request: Request) -> Deps:
    deps: Deps = request.app.state.deps
    return deps


DepsDep = Annotated[Deps, Depends(get_deps)]


async def current_tenant(request: Request, deps: DepsDep) -> Tenant:
    return await tenant_of(request, deps.store)


CurrentTenant = Annotated[Tenant, Depends(current_tenant)]
