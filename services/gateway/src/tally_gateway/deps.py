"""What handlers get: the service's connections in one frozen bundle, and the caller's tenant."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from redis.asyncio import Redis

from tally_db import Store
from tally_gateway.config import Settings
from tally_storage import ObjectStore


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
