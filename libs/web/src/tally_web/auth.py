"""Bearer API keys: the key decides the tenant, and its scope what the request may change."""

from __future__ import annotations

import hashlib
import time
from typing import Annotated, Protocol

from cachetools import TTLCache
from fastapi import Depends, Request

from tally_db import Caller, Tenant
from tally_web.errors import ApiError


class CallerLookup(Protocol):
    async def caller_for_api_key(self, key: str) -> Caller | None: ...


class CallerCache:
    """API key → its Caller, remembered for `ttl_s` so a busy poller costs no database query per
    request. A revoked key keeps working on this process for at most `ttl_s` (after the lookup
    that found it live). Unknown keys are remembered too, for `unknown_ttl_s`, so a flood of
    made-up keys costs one lookup per key and interval, not one per request. At most `size`
    keys of each kind are held, the least recently used leaving first, as SHA-256 digests,
    never as themselves."""

    def __init__(
        self,
        lookup: CallerLookup,
        ttl_s: float = 10.0,
        size: int = 10_000,
        unknown_ttl_s: float = 5.0,
    ) -> None:
        self._lookup = lookup
        self._ttl_s = ttl_s
        self._unknown_ttl_s = unknown_ttl_s
        self._known: TTLCache[bytes, Caller] = TTLCache(size, ttl_s or 1, timer=time.monotonic)
        self._unknown: TTLCache[bytes, bool] = TTLCache(
            size, unknown_ttl_s or 1, timer=time.monotonic
        )

    async def caller_for_api_key(self, key: str) -> Caller | None:
        digest = hashlib.sha256(key.encode()).digest()
        hit = self._known.get(digest)
        if hit is not None:
            return hit
        if digest in self._unknown:
            return None
        caller = await self._lookup.caller_for_api_key(key)
        if caller is not None and self._ttl_s > 0:
            self._known[digest] = caller
        elif caller is None and self._unknown_ttl_s > 0:
            self._unknown[digest] = True
        return caller

    def remembers(self, key: str) -> bool:
        """Whether `key` is remembered, live or unknown: its lookup would cost no query."""
        digest = hashlib.sha256(key.encode()).digest()
        return digest in self._known or digest in self._unknown

    def forget(self, key: str) -> None:
        """Drop what is remembered of `key` (a key just created or revoked here)."""
        digest = hashlib.sha256(key.encode()).digest()
        self._known.pop(digest, None)
        self._unknown.pop(digest, None)


def bearer_key(request: Request) -> str | None:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" and key.strip() else None


async def known_caller(request: Request, lookup: CallerLookup) -> Caller | None:
    """The live key of the request's `Authorization: Bearer <api key>`, None without one or
    for an unknown or revoked key. Looked up once per request, whoever asks first (the rate
    limiter, then the route): the answer is kept on the request (`request.state.caller`)."""
    state = request.state
    if hasattr(state, "caller"):
        cached: Caller | None = state.caller
        return cached
    key = bearer_key(request)
    caller = None if key is None else await lookup.caller_for_api_key(key)
    state.caller = caller
    return caller


async def caller_of(request: Request, lookup: CallerLookup) -> Caller:
    """The live key of the request's `Authorization: Bearer <api key>`; 401 otherwise."""
    caller = await known_caller(request, lookup)
    if caller is not None:
        return caller
    if bearer_key(request) is None:
        raise ApiError(401, "unauthenticated", "send Authorization: Bearer <api key>")
    raise ApiError(401, "unauthenticated", "the API key is unknown or revoked")


def lookup_of(request: Request) -> CallerLookup:
    # Every HTTP service keeps its connections in app.state.deps, with the record store as
    # `store`; one that sets app.state.callers (a CallerCache) answers from it.
    lookup: CallerLookup = (
        getattr(request.app.state, "callers", None) or request.app.state.deps.store
    )
    return lookup


async def _current_caller(request: Request) -> Caller:
    return await caller_of(request, lookup_of(request))


async def _current_tenant(request: Request) -> Tenant:
    return (await _current_caller(request)).tenant


async def _writing_tenant(request: Request) -> Tenant:
    caller = await _current_caller(request)
    if caller.scope != "write":
        raise ApiError(
            403, "insufficient_scope", "this API key is read-only; use a key with write scope"
        )
    return caller.tenant


CurrentCaller = Annotated[Caller, Depends(_current_caller)]
CurrentTenant = Annotated[Tenant, Depends(_current_tenant)]
"""The tenant of a key of any scope: for reads."""
WritingTenant = Annotated[Tenant, Depends(_writing_tenant)]
"""The tenant of a `write` key: for what creates, changes or deletes (403 for a read key)."""
