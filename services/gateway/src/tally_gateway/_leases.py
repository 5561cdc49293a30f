"""Open event streams: their caps, shared by every gateway replica, and their keys' liveness.

Each open stream holds a lease in two Redis sorted sets, its key's and its tenant's (member:
the stream's id, score: when the lease expires). Opening one trims expired leases and checks
both caps in one Lua call (`_lease.lua`), so replicas never race each other past a cap; over
either cap the open is refused before the stream starts. Each process refreshes the leases of
its own streams every third of the lease, in one pipeline for all of them, and removes a lease
when its stream ends; a process that dies leaves leases that expire on their own.

The same periodic task asks the record store once which of its streams' keys are still live
(`Store.live_keys`: one query per process and period, however many streams are open) and ends
the streams of a revoked key.

While Redis is unreachable the caps hold per process, counted from this process's open streams:
never unlimited.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from typing import Final, Literal, Protocol

from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger("tally_gateway.leases")

LEASE_SCRIPT: Final = resources.files("tally_gateway").joinpath("_lease.lua").read_text()
Cap = Literal["key", "tenant"]
REFRESH_BATCH: Final = 500

REFUSED = Counter(
    "tally_sse_refused", "Streams refused: their key or tenant had its most open", ["cap"]
)
REVOKED = Counter("tally_sse_revoked", "Open streams ended because their key was revoked")


# Only the gateway reads and writes these sets.
def key_streams_key(key_id: uuid.UUID) -> str:
    return f"streams:key:{key_id}"


def tenant_streams_key(tenant_id: uuid.UUID) -> str:
    return f"streams:tenant:{tenant_id}"


class KeyCheck(Protocol):
    async def live_keys(self, key_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]: ...


class TooManyStreamsError(Exception):
    def __init__(self, cap: Cap) -> None:
        super().__init__(cap)
        self.cap = cap


@dataclass(eq=False, slots=True)
class OpenStream:
    """One stream's place under the caps; `ended` is done once its key has been revoked (a
    future, not an Event: its stream is told by a callback, with no task waiting on it)."""

    key_id: uuid.UUID
    tenant_id: uuid.UUID
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    ended: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class StreamLeases:
    def __init__(self, redis: Redis, keys: KeyCheck, key_check_s: float, lease_s: float) -> None:
        self.redis = redis
        self.keys = keys
        self.lease_s = lease_s
        # Both chores on one clock: leases refreshed well before they lapse, keys checked at
        # least every `key_check_s`.
        self.tick_s = min(key_check_s, lease_s / 3)
        self.streams: dict[str, OpenStream] = {}
        self._script = redis.register_script(LEASE_SCRIPT)
        self._task: asyncio.Task[None] | None = None
        self._ending: list[OpenStream] = []  # ended, their leases not yet removed
        self._releasing = asyncio.Lock()

    async def open(
        self, key_id: uuid.UUID, tenant_id: uuid.UUID, per_key: int, per_tenant: int
    ) -> OpenStream:
        """A lease for a new stream of this key and tenant; TooManyStreamsError if either is at
        its cap."""
        stream = OpenStream(key_id, tenant_id)
        now = time.time()
        try:
            verdict = await self._script(
                keys=[key_streams_key(key_id), tenant_streams_key(tenant_id)],
                args=[now, now + self.lease_s, stream.id, per_key, per_tenant, self._ttl()],
            )
            answer = verdict.decode() if isinstance(verdict, bytes) else str(verdict)
        except RedisError as exc:
            log.warning("stream caps counted on this process only: Redis failed (%s)", exc)
            answer = self._local(key_id, tenant_id, per_key, per_tenant)
        if answer != "open":
            cap: Cap = "key" if answer == "key" else "tenant"
            REFUSED.labels(cap).inc()
            raise TooManyStreamsError(cap)
        self.streams[stream.id] = stream
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="stream leases")
        return stream

    def _local(self, key_id: uuid.UUID, tenant_id: uuid.UUID, per_key: int, per_tenant: int) -> str:
        if sum(s.key_id == key_id for s in self.streams.values()) >= per_key:
            return "key"
        if sum(s.tenant_id == tenant_id for s in self.streams.values()) >= per_tenant:
            return "tenant"
        return "open"

    def _ttl(self) -> int:
        return math.ceil(self.lease_s) + 1  # a set outlives its longest lease, then goes

    async def release(self, stream: OpenStream) -> None:
        """The stream has ended: its lease goes (or lapses by itself if Redis fails now).

        Streams that end together (thousands, when the edge restarts) go in one pipeline at a
        time, each taking along every stream that ended while the one before was on its way:
        one pipeline each needed a Redis connection at once, more than the pool has, and the
        leases of those refused were left to hold their places for a whole lease."""
        self.streams.pop(stream.id, None)
        self._ending.append(stream)
        async with self._releasing:
            ending, self._ending = self._ending, []
            if not ending:
                return  # the pipeline before took this one along
            pipe = self.redis.pipeline(transaction=False)
            for gone in ending:
                pipe.zrem(key_streams_key(gone.key_id), gone.id)
                pipe.zrem(tenant_streams_key(gone.tenant_id), gone.id)
            try:
                await pipe.execute()
            except RedisError as exc:
                log.warning(
                    "%d streams' leases are left to expire: Redis failed (%s)", len(ending), exc
                )

    async def _run(self) -> None:
        while self.streams:
            await asyncio.sleep(self.tick_s)
            try:
                await self.refresh()
                await self.check_keys()
            except Exception:  # never the end of the chores: streams would go uncounted
                log.exception("the chores of the open streams failed; again in %g s", self.tick_s)

    async def refresh(self) -> None:
        """Extend the lease of every stream open here (and put back any that Redis lost: they
        are open, so they count)."""
        if not self.streams:
            return
        expiry = time.time() + self.lease_s
        streams = tuple(self.streams.values())
        members: dict[str, list[str]] = {}  # each set's streams: one ZADD for many of them
        for stream in streams:
            for key in (key_streams_key(stream.key_id), tenant_streams_key(stream.tenant_id)):
                members.setdefault(key, []).append(stream.id)
        try:
            # In pipelines of REFRESH_BATCH members: one of 10,000 streams' 40,000 commands
            # held the event loop, and every stream, for 230 ms (75 ms in all now, 17 at most).
            pipe = self.redis.pipeline(transaction=False)
            queued = 0
            for key, ids in members.items():
                for at in range(0, len(ids), REFRESH_BATCH):
                    batch = ids[at : at + REFRESH_BATCH]
                    pipe.zadd(key, dict.fromkeys(batch, expiry))
                    queued += len(batch)
                    if queued >= REFRESH_BATCH:
                        await pipe.execute()
                        pipe, queued = self.redis.pipeline(transaction=False), 0
                pipe.expire(key, self._ttl())
            await pipe.execute()
            # A stream that ended while the refresh was on its way: its lease is put back
            # there; take it away again, or it would hold a place for a whole lease.
            for stream in streams:
                if stream.id not in self.streams:
                    await self.release(stream)
        except RedisError as exc:
            log.warning("stream leases not refreshed: Redis failed (%s)", exc)

    async def check_keys(self) -> None:
        """End the streams whose key has been revoked: one query for all of them."""
        streams = tuple(self.streams.values())
        if not streams:
            return
        try:
            live = await self.keys.live_keys({s.key_id for s in streams})
        except Exception as exc:  # the database is away: keep serving, ask again next time
            log.warning("the keys of %d open streams not checked (%s)", len(streams), exc)
            return
        for stream in streams:
            if stream.key_id not in live and not stream.ended.done():
                REVOKED.inc()
                stream.ended.set_result(None)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
