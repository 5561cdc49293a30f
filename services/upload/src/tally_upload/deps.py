"""What handlers get: the service's connections in one frozen bundle, and the caller's tenant."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from tally_bus import Bus
from tally_db import OutboxRelay, Store
from tally_storage import ObjectStore
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
