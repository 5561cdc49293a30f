"""What handlers get: the service's connections in one frozen bundle, and the caller's tenant."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from importlib import resources
from typing import Annotated, Final

from fastapi import Depends, Request
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from tally_bus import Bus
from tally_db import OutboxRelay, Store
from tally_gateway._streams import FeedHub
from tally_gateway.config import Settings
from tally_storage import ObjectStore
from tally_web import TenantCache

# The Lua of a poll (tally_gateway._reads.session_state): one Redis round trip per poll.
SESSION_SCRIPT: Final = resources.files("tally_gateway").joinpath("_session.lua").read_text()


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


def build_deps(
    settings: Settings,
    store: Store,
    redis: Redis,
    objects: ObjectStore,
    bus: Bus,
    relay: OutboxRelay,
) -> Deps:
    """The gateway's Deps around its connections (the app's lifespan opens them; a test may
    bring its own): what is made from them, the API key cache, the SSE feeds of `redis` and the
    polling script registered on it, is made here and nowhere else."""
    return Deps(
        settings,
        store,
        redis,
        objects,
        TenantCache(store, settings.api_key_cache_s),
        FeedHub(redis, settings.sse_buffer),
        redis.register_script(SESSION_SCRIPT),
        bus,
        relay,
    )


def get_deps(request: Request) -> Deps:
    deps: Deps = request.app.state.deps
    return deps


DepsDep = Annotated[Deps, Depends(get_deps)]
