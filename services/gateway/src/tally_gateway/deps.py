"""What handlers get: the service's connections in one frozen bundle, and the caller's tenant."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Annotated, Final

from cachetools import LRUCache
from fastapi import Depends, Request
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from tally_bus import Bus
from tally_db import OutboxRelay, Store
from tally_gateway._leases import StreamLeases
from tally_gateway._streams import FeedHub
from tally_gateway.config import Settings
from tally_storage import ObjectStore
from tally_web import CallerCache, RateLimiter
from tally_web.limits import Limits

POLLS_KEPT: Final = 10_000  # sessions whose last polling answer is kept
# The Lua of a poll (tally_gateway._reads.session_state): one Redis round trip per poll.
SESSION_SCRIPT: Final = resources.files("tally_gateway").joinpath("_session.lua").read_text()


@dataclass(frozen=True, slots=True)
class Poll:
    """A polling answer, built once per session version."""

    version: str
    body: bytes
    etag: str


@dataclass(frozen=True, slots=True)
class Deps:
    settings: Settings
    store: Store
    redis: Redis
    objects: ObjectStore
    callers: CallerCache
    feeds: FeedHub
    session_script: AsyncScript
    bus: Bus
    relay: OutboxRelay  # publishes what the gateway writes to the outbox (job deletions)
    streams: StreamLeases  # open streams: their caps and their keys' liveness
    limits: Limits  # every tenant's defaults (a tenant's own: limits.for_tenant(tenant))
    limiter: RateLimiter  # request rates, in buckets on `redis` (this process's own while it fails)
    # The last polling answer of each recently polled session (session id → Poll), so that a
    # poll of a session whose version has not moved costs one small Redis reply and no JSON.
    polls: LRUCache[str, Poll] = field(default_factory=lambda: LRUCache(POLLS_KEPT))

    @classmethod
    def build(
        cls,
        settings: Settings,
        store: Store,
        redis: Redis,
        objects: ObjectStore,
        bus: Bus,
        relay: OutboxRelay,
    ) -> Deps:
        """The gateway's Deps around its connections (the app's lifespan opens them; a test may
        bring its own): what is made from them, the API key cache, the SSE feeds of `redis`,
        the open streams' leases, the polling script registered on it and the rate limiter's
        buckets there, is made here and nowhere else."""
        limits = Limits()
        return cls(
            settings,
            store,
            redis,
            objects,
            CallerCache(store, settings.api_key_cache_s),
            FeedHub(redis, settings.sse_buffer),
            redis.register_script(SESSION_SCRIPT),
            bus,
            relay,
            StreamLeases(redis, store, settings.stream_key_check_s, settings.stream_lease_s),
            limits,
            RateLimiter(redis, limits),
        )


def get_deps(request: Request) -> Deps:
    deps: Deps = request.app.state.deps
    return deps


DepsDep = Annotated[Deps, Depends(get_deps)]
