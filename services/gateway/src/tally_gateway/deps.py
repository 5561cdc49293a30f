"""What handlers get: the service's connections in one frozen bundle, and the caller's tenant."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from tally_bus import Bus
from tally_db import OutboxRelay, Store
from tally_gateway._streams import FeedHub
from tally_gateway.config import Settings
from tally_storage import ObjectStore
from tally_web import TenantCache


@dataclass(frozen=True, slots=True)
class Poll:
    """A polling answer, built once per session version."""

    version: str
    body: bytes
    etag: str


class PollCache:
    """The last polling answer of each recently polled session, so that a poll of a session
    whose version has not moved costs one small Redis reply and no JSON."""

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._polls: OrderedDict[str, Poll] = OrderedDict()

    def get(self, session_id: str) -> Poll | None:
        return self._polls.get(session_id)

    def put(self, session_id: str, poll: Poll) -> None:
        self._polls[session_id] = poll
        self._polls.move_to_end(session_id)
        while len(self._polls) > self._size:
            self._polls.popitem(last=False)


@dataclass(frozen=True, slots=True)
class Deps:
    settings: Settings
    store: Store
    redis: Redis
    objects: ObjectStore
    tenants: TenantCache
    feeds: FeedHub
    session_script: AsyncScript
    bus: Bus
    relay: OutboxRelay  # publishes what the gateway writes to the outbox (job deletions)
    polls: PollCache = field(default_factory=PollCache)


def get_deps(request: Request) -> Deps:
    deps: Deps = request.app.state.deps
    return deps


DepsDep = Annotated[Deps, Depends(get_deps)]
