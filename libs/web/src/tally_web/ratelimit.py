"""Request rate limits: token buckets in Redis shared by every replica, per API key and per
tenant, for three classes of request; a per-process bucket stands in while Redis is away.

A request is charged to its class (`charge_for`) once its key is known: to the key's and the
tenant's buckets, or for no key, an unknown or a revoked one (the route's 401) to its client
address's. A key this process has not looked up lately is charged to its address first, before
the lookup: made-up keys cost the record store a key's read rate per address at most.

| request                                                   | class  | cost                  |
|-----------------------------------------------------------|--------|-----------------------|
| GET/HEAD under /v1/ (status, lists, results, downloads)   | read   | 1                     |
| … with `If-None-Match` (a conditional poll)               | read   | 0.2; +0.8 unless 304  |
| GET /v1/jobs?limit=N (default 50)                         | read   | max(1, N/4)           |
| GET /v1/sessions/{sid}/jobs?limit=N (default 100)         | read   | max(1, N/100)         |
| POST/PUT/PATCH/DELETE under /v1/ (sessions, photos, …)    | write  | 1                     |
| GET /v1/sessions/{sid}/events, POST /v1/stream-tokens     | stream | 1                     |
| anything under /v1/ without a live key, per address       | read   | as above              |

A conditional poll pays its discount up front; one that was not answered 304 is charged the
difference after its answer (a second round trip, only then). /healthz, /readyz, /metrics, the
dashboard's files and the OpenAPI pages are not under /v1/: never limited.

Each request takes from two buckets, its key's and its tenant's, at once and only if both have
room (`_ratelimit.lua`, one round trip), with the rates of `tally_web.limits.Limits` and the
tenant's own. A refused request is a 429 in the envelope with `Retry-After` and, like every
limited class's answer, the `RateLimit-Policy` and `RateLimit` fields of
draft-ietf-httpapi-ratelimit-headers-11 (structured fields: `"read-key";q=200;w=4` is a bucket
of 200 filling in 4 s; `"read-key";r=150;t=1`: 150 left, full again in 1 s).

When Redis fails or is slow the limits hold per process (the same rates, so N replicas let
through up to N times the rate, never an unlimited one); Redis is asked again after a second,
and its buckets, untouched meanwhile, take over when it answers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final, Literal

from cachetools import LRUCache
from fastapi import FastAPI
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tally_db import Caller, Tenant
from tally_web.auth import CallerCache, bearer_key, known_caller, lookup_of
from tally_web.errors import ApiError, envelope
from tally_web.limits import Limits
from tally_web.schemas import SESSION_PAGE, SESSION_PAGE_MAX

log = logging.getLogger("tally_web.ratelimit")

Klass = Literal["read", "write", "stream"]
SCRIPT: Final = resources.files("tally_web").joinpath("_ratelimit.lua").read_text()
KEY_PREFIX: Final = "tally:ratelimit:"

# The cost table (the module's docstring explains it).
READ_COST: Final = 1.0
CONDITIONAL_COST: Final = 0.2  # a poll with If-None-Match: most answer 304 from one Redis read
# GET /v1/jobs: a read per 4 jobs a page holds (a page of 50 costs 12.5, of 200 50), about
# what it costs the gateway next to a poll: its jobs come from PostgreSQL and each one's live
# state from Redis; on make bench-abuse a page of 200 took ~27 ms of CPU, a poll of a 50-job
# session ~0.5 ms. (A read per 10 jobs let a key's burst of pages hold B's p99 at 120 ms.)
JOBS_PER_COST: Final = 4
DEFAULT_PAGE: Final = 50
# A page of a session's jobs: one read per default page (100 jobs, one Redis range and one
# pipeline; ~3.6 ms on make bench-status next to 0.7 ms for an unchanged poll), so a page of
# 1,000 costs 10.
WRITE_COST: Final = 1.0
STREAM_COST: Final = 1.0
READ_METHODS: Final = frozenset({"GET", "HEAD"})


@dataclass(frozen=True, slots=True)
class Charge:
    klass: Klass
    cost: float
    unless_304: float = 0.0  # charged after the answer when it was not a 304


def charge_for(method: str, path: str, query: dict[str, str], conditional: bool) -> Charge | None:
    """What a request costs, None for what is never limited. Pure."""
    if not path.startswith("/v1/"):
        return None
    reading = method in READ_METHODS
    if path == "/v1/stream-tokens" or (
        reading and path.startswith("/v1/sessions/") and path.endswith("/events")
    ):
        return Charge("stream", STREAM_COST)
    if not reading:
        return Charge("write", WRITE_COST)
    cost = READ_COST
    if path == "/v1/jobs":
        try:
            limit = min(max(int(query.get("limit", DEFAULT_PAGE)), 1), 200)
        except ValueError:
            limit = DEFAULT_PAGE  # a 422; costs what a default page does
        cost = max(READ_COST, limit / JOBS_PER_COST)
    elif path.startswith("/v1/sessions/") and path.endswith("/jobs") and "limit" in query:
        text = query["limit"]
        limit = int(text) if text.isascii() and text.isdigit() and len(text) <= 4 else 0
        cost = max(READ_COST, min(limit, SESSION_PAGE_MAX) / SESSION_PAGE)
    if conditional:
        return Charge("read", CONDITIONAL_COST, unless_304=cost - CONDITIONAL_COST)
    return Charge("read", cost)


@dataclass(frozen=True, slots=True)
class Bucket:
    """One bucket a request takes from: `name` in the RateLimit fields ("read-key"), `whose`
    in the 429's message ("this API key")."""

    key: str
    name: str
    whose: str
    rate: float
    burst: float


def caller_buckets(caller: Caller, klass: Klass, limits: Limits) -> tuple[Bucket, Bucket]:
    """The key's and the tenant's buckets of `klass`, with the tenant's own limits. In one Redis
    hash slot (the tenant's id is the hash tag): a cluster runs the script on both."""
    own = limits.for_tenant(caller.tenant)
    tenant = _tenant_bucket(caller.tenant, klass, own)
    return (
        Bucket(
            f"{KEY_PREFIX}{{{caller.tenant.id}}}:{klass}:key:{caller.key_id}",
            f"{klass}-key",
            "this API key",
            getattr(own, f"{klass}_rate"),
            getattr(own, f"{klass}_burst"),
        ),
        tenant,
    )


def tenant_buckets(tenant: Tenant, klass: Klass, limits: Limits) -> tuple[Bucket]:
    """The tenant's bucket alone: for what a tenant's stream token opens (no key sends it)."""
    return (_tenant_bucket(tenant, klass, limits.for_tenant(tenant)),)


def _tenant_bucket(tenant: Tenant, klass: Klass, own: Limits) -> Bucket:
    return Bucket(
        f"{KEY_PREFIX}{{{tenant.id}}}:{klass}:tenant",
        f"{klass}-tenant",
        "this tenant",
        getattr(own, f"tenant_{klass}_rate"),
        getattr(own, f"tenant_{klass}_burst"),
    )


def address_buckets(address: str, limits: Limits) -> tuple[Bucket]:
    """The bucket of requests without a known key from one client address: a key's read
    limits (a flood of made-up keys gets 429s, not a database lookup each)."""
    return (
        Bucket(
            f"{KEY_PREFIX}{{addr:{address}}}:read",
            "read-address",
            "this client address",
            limits.read_rate,
            limits.read_burst,
        ),
    )


def client_address(scope: Scope) -> str:
    """The client's address: the peer's, or, when the peer is the edge (a loopback or private
    address), the X-Forwarded-For the edge sets (`proxy_set_header X-Forwarded-For
    $remote_addr`: one address, the client's; its last entry, should a proxy have appended)."""
    client = scope.get("client")
    peer = str(client[0]) if client else "unknown"
    try:
        internal = ipaddress.ip_address(peer)
    except ValueError:
        return peer
    if internal.is_loopback or internal.is_private:
        for name, value in scope.get("headers", ()):
            if name == b"x-forwarded-for":
                forwarded = value.decode("latin-1").rsplit(",", 1)[-1].strip()
                return forwarded[:64] or peer
    return peer


@dataclass(frozen=True, slots=True)
class Level:
    bucket: Bucket
    tokens: float
    room: bool


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after_s: float  # until the request would fit (0 when allowed)
    levels: tuple[Level, ...]

    @property
    def refused_by(self) -> Bucket | None:
        return next((level.bucket for level in self.levels if not level.room), None)

    def headers(self) -> dict[str, str]:
        """RateLimit-Policy and RateLimit (draft-ietf-httpapi-ratelimit-headers-11), and on a
        refusal Retry-After (whole seconds, at least 1)."""
        policy = ", ".join(
            f'"{lv.bucket.name}";q={int(lv.bucket.burst)};'
            f"w={max(1, math.ceil(lv.bucket.burst / lv.bucket.rate))}"
            for lv in self.levels
        )
        current = ", ".join(
            f'"{lv.bucket.name}";r={max(0, math.floor(lv.tokens))};'
            f"t={max(0, math.ceil((lv.bucket.burst - lv.tokens) / lv.bucket.rate))}"
            for lv in self.levels
        )
        out = {"RateLimit-Policy": policy, "RateLimit": current}
        if not self.allowed:
            out["Retry-After"] = str(max(1, math.ceil(self.retry_after_s)))
        return out


class LocalBuckets:
    """The buckets of this process alone, the same arithmetic as `_ratelimit.lua` on `clock`
    (monotonic: one process, one clock). At most `size` buckets are held; one that leaves is
    full when next seen, as an idle one would be."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, size: int = 100_000) -> None:
        self._clock = clock
        self._held: LRUCache[str, tuple[float, float]] = LRUCache(size)

    def take(self, buckets: Sequence[Bucket], cost: float, debit: bool = False) -> Decision:
        now = self._clock()
        levels: list[Level] = []
        wait = 0.0
        for bucket in buckets:
            tokens, at = self._held.get(bucket.key, (bucket.burst, now))
            tokens = min(bucket.burst, tokens + max(0.0, now - at) * bucket.rate)
            need = min(cost, bucket.burst)
            levels.append(Level(bucket, tokens, tokens >= need))
            if tokens < need:
                wait = max(wait, (need - tokens) / bucket.rate)
        allowed = debit or all(level.room for level in levels)
        if not allowed:
            return Decision(False, wait, tuple(levels))
        taken = []
        for level in levels:
            left = max(0.0, level.tokens - min(cost, level.bucket.burst))
            self._held[level.bucket.key] = (left, now)
            taken.append(Level(level.bucket, left, level.room))
        return Decision(True, 0.0, tuple(taken))


class RateLimiter:
    """Buckets in Redis (`redis`), this process's own while Redis fails: an error, or no
    answer within `redis_timeout_s`. It is then asked again once `retry_s` has passed; the
    first failure and the recovery are logged once each.

    A bucket that refused a request is remembered here with what it held: a request it
    cannot have room for yet, even if nobody else took from it meanwhile (other replicas only
    take), is refused without a round trip. A client that ignores Retry-After costs no Redis
    work, and nothing is refused that Redis would have let through."""

    def __init__(
        self,
        redis: Redis,
        limits: Limits | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        redis_timeout_s: float = 0.25,
        retry_s: float = 1.0,
    ) -> None:
        self.limits = limits or Limits()
        self._script = redis.register_script(SCRIPT)
        self._local = LocalBuckets(clock)
        self._clock = clock
        self._timeout_s = redis_timeout_s
        self._retry_s = retry_s
        self._retry_at: float | None = None  # while Redis is away: when to ask it again
        # Bucket key → (when, its tokens then, the refusal) of buckets that refused lately.
        self._spent: LRUCache[str, tuple[float, float, Decision]] = LRUCache(10_000)

    @property
    def local(self) -> bool:
        """Whether limits are this process's own now (Redis away)."""
        return self._retry_at is not None

    async def take(self, buckets: Sequence[Bucket], cost: float) -> Decision:
        """Take `cost` from every bucket if each has room, else nothing."""
        now = self._clock()
        for bucket in buckets:
            spent = self._spent.get(bucket.key)
            if spent is None:
                continue
            at, tokens, refusal = spent
            most = tokens + (now - at) * bucket.rate  # what it can hold by now, at most
            need = min(cost, bucket.burst)
            if most < need:
                return dataclasses.replace(refusal, retry_after_s=(need - most) / bucket.rate)
            del self._spent[bucket.key]
        decision, shared = await self._run(buckets, cost, debit=False)
        for level in decision.levels:
            if shared and not level.room:  # this process's own buckets are not Redis's
                self._spent[level.bucket.key] = (now, level.tokens, decision)
        return decision

    async def debit(self, buckets: Sequence[Bucket], cost: float) -> None:
        """Take `cost` (or what is left) from every bucket: for what was served already."""
        await self._run(buckets, cost, debit=True)  # never refused: nothing to remember

    async def _run(
        self, buckets: Sequence[Bucket], cost: float, debit: bool
    ) -> tuple[Decision, bool]:
        """The decision, and whether Redis made it."""
        if self._retry_at is not None and self._clock() < self._retry_at:
            return self._local.take(buckets, cost, debit), False
        args: list[str | float] = [cost, "debit" if debit else "take"]
        for bucket in buckets:
            args += [bucket.rate, bucket.burst]
        try:
            async with asyncio.timeout(self._timeout_s):
                raw = await self._script(keys=[b.key for b in buckets], args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            if self._retry_at is None:
                log.warning(
                    "rate limits: Redis failed (%s); limiting in this process until it answers",
                    type(exc).__name__,
                )
            self._retry_at = self._clock() + self._retry_s
            return self._local.take(buckets, cost, debit), False
        if self._retry_at is not None:
            self._retry_at = None
            log.warning("rate limits: Redis answers again; its buckets are shared again")
        allowed, wait, *rest = raw
        levels = tuple(
            Level(bucket, float(rest[2 * i]), bool(int(rest[2 * i + 1])))
            for i, bucket in enumerate(buckets)
        )
        return Decision(bool(int(allowed)), float(wait), levels), True


def rate_limited(decision: Decision, klass: Klass) -> ApiError:
    """The 429 of a refused request: the envelope naming the class and the bucket that lacked
    room, Retry-After and the RateLimit fields."""
    refused = decision.refused_by
    whose = refused.whose if refused else "this API key"
    headers = decision.headers()
    message = f"too many {klass} requests for {whose}; retry in {headers['Retry-After']} s"
    return ApiError(429, "rate_limited", message, headers=headers)


class RateLimits:
    """Pure ASGI middleware charging each request under /v1/ to its buckets before the route
    runs (`app.state.limiter`, a RateLimiter, and the app's key lookup, as the routes find
    them): a 429 when one lacks room; else the route's answer with the RateLimit fields."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        charge = charge_for(
            scope["method"],
            scope["path"],
            dict(request.query_params),
            "if-none-match" in request.headers,
        )
        if charge is None:
            await self.app(scope, receive, send)
            return
        limiter: RateLimiter = request.app.state.limiter
        lookup = lookup_of(request)
        key = bearer_key(request)
        address = address_buckets(client_address(scope), limiter.limits)
        # A key this process has not looked up lately costs a database query: its address pays
        # for that first, so made-up keys cost the database a key's read rate per address at
        # most (a live key's lookup comes once per cache interval, from its bucket too).
        paid = isinstance(lookup, CallerCache) and key is not None and not lookup.remembers(key)
        if paid:
            decision = await limiter.take(address, charge.cost)
            if not decision.allowed:
                await self._refuse(decision, charge.klass, scope, receive, send)
                return
        caller = await known_caller(request, lookup)
        if caller is not None:
            buckets: Sequence[Bucket] = caller_buckets(caller, charge.klass, limiter.limits)
            decision = await limiter.take(buckets, charge.cost)
        else:  # no key, or not a live one: the route's 401, limited per address
            buckets = address
            if not paid:
                decision = await limiter.take(buckets, charge.cost)
        if not decision.allowed:
            await self._refuse(decision, charge.klass, scope, receive, send)
            return
        status = 0
        # Held no longer than needed: an event stream keeps this frame for hours.
        del request, lookup, address, caller

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).update(decision.headers())
            await send(message)

        await self.app(scope, receive, sending)
        if charge.unless_304 and status != 304:
            await limiter.debit(buckets, charge.unless_304)

    @staticmethod
    async def _refuse(
        decision: Decision, klass: Klass, scope: Scope, receive: Receive, send: Send
    ) -> None:
        refusal = rate_limited(decision, klass)
        body = envelope(refusal.code, refusal.message)
        response = JSONResponse(body, status_code=429, headers=refusal.headers)
        await response(scope, receive, send)


RATE_LIMITED: Final = {
    "description": "rate limited: retry after `Retry-After` seconds",
    "headers": {
        name: {"schema": {"type": "string"}, "description": about}
        for name, about in (
            ("Retry-After", "whole seconds, at least 1"),
            ("RateLimit-Policy", "the buckets (draft-ietf-httpapi-ratelimit-headers-11)"),
            ("RateLimit", "what is left of each bucket"),
        )
    },
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}},
}


def install_rate_limits(app: FastAPI) -> None:
    """RateLimits innermost of the app's middleware, right around the routes: every other
    middleware (RequestContext's request id and last resort, the metrics) sees its 429s. And
    each operation under /v1/ documents the 429 in the app's OpenAPI (its body is the
    ErrorEnvelope that every such route's other errors already put in the components)."""
    app.user_middleware.append(Middleware(RateLimits))
    described = app.openapi

    def openapi() -> dict[str, Any]:
        spec = described()  # built once and kept by FastAPI: this adds to it once
        for path, item in spec.get("paths", {}).items():
            if path.startswith("/v1/"):
                for operation in item.values():
                    operation["responses"].setdefault("429", RATE_LIMITED)
        return spec

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way
