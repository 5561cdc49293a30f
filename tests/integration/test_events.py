"""Server-Sent Events through a real gateway (uvicorn on a socket), real Redis and PostgreSQL.

The projection is written by the projector's own fold, so the stream the gateway reads is the
one production writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import REGISTRY
from pydantic import SecretStr
from redis.asyncio import Redis
from tests.eventually import eventually_async

from tally_contracts import projection as redis_keys
from tally_contracts import sequence
from tally_contracts.v1 import JobEvent, JobRef
from tally_db import Job, Store
from tally_gateway import _tokens
from tally_gateway._leases import (
    StreamLeases,
    TooManyStreamsError,
    key_streams_key,
    tenant_streams_key,
)
from tally_gateway._streams import FeedHub
from tally_gateway.app import create_app
from tally_gateway.config import Settings
from tally_gateway.deps import Deps
from tally_gateway.routes.events import session_event_stream
from tally_projector.projection import Projection
from tally_stack.local_s3 import MOTO_ACCESS_KEY, MOTO_SECRET_KEY
from tally_upload._records import NewJob, add_jobs

pytestmark = pytest.mark.integration
REDIS_URL = "redis://127.0.0.1:6379/13"
JOBS = 12
SLICES = 40


@dataclass
class Event:
    id: str
    event: str
    data: dict[str, Any]


@dataclass
class Stage:
    base: str
    redis: Redis
    projection: Projection
    settings: Settings
    key_a: str
    key_b: str
    session_id: str
    jobs: list[Job]
    app: FastAPI
    sequences: dict[str, int] = field(default_factory=dict)

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key_a}"}

    @property
    def store(self) -> Store:
        store: Store = self.app.state.deps.store
        return store

    async def key_id(self, key: str) -> uuid.UUID:
        caller = await self.store.caller_for_api_key(key)
        assert caller is not None
        return caller.key_id

    @property
    def events_url(self) -> str:
        return f"{self.base}/v1/sessions/{self.session_id}/events"

    async def emit(self, job: Job, **kind: Any) -> None:
        """Fold the job's next event, as the projector does with what the bus brings."""
        name = next(iter(kind))
        if name == "queued":
            number = sequence.QUEUED
        elif name == "planned":
            number = sequence.PLANNED
        elif name in ("completed", "failed", "cancelled"):
            number = sequence.FINAL
        else:
            number = max(self.sequences.get(str(job.id), sequence.STARTED), sequence.STARTED) + 1
        self.sequences[str(job.id)] = number
        stamp = Timestamp()
        stamp.GetCurrentTime()
        ref = JobRef(
            tenant_id=str(job.tenant_id), session_id=str(job.session_id), job_id=str(job.id)
        )
        await self.projection.fold(
            JobEvent(
                event_id=uuid.uuid4().hex,
                job=ref,
                sequence=number,
                emitted_at=stamp,
                source="test",
                **kind,
            )
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
async def stage(database: str, s3_endpoint: str, amqp_url: str) -> AsyncIterator[Stage]:
    redis = Redis.from_url(REDIS_URL)
    await redis.flushdb()
    port = _free_port()
    settings = Settings(
        port=port,
        database_url=SecretStr(database),
        amqp_url=SecretStr(amqp_url),
        bus_prefix=f"test-{uuid.uuid4().hex[:10]}",
        redis_url=SecretStr(REDIS_URL),
        s3_endpoint_url=s3_endpoint,
        s3_bucket="unused",
        s3_access_key_id=MOTO_ACCESS_KEY,
        s3_secret_access_key=SecretStr(MOTO_SECRET_KEY),
        sse_heartbeat_s=0.3,
        sse_retry_ms=500,
        stream_key_check_s=0.2,
    )
    async with Store.open(database) as store:
        a, b = await store.create_tenant("a"), await store.create_tenant("b")
        # A reconnects 101 times within a second or two (the resume test), which the default
        # stream limits (a burst of 30 opens per key) exist to refuse: A may open more.
        await store.set_tenant_limits(a.id, {"stream_burst": 1000, "tenant_stream_burst": 1000})
        key_a = (await store.create_api_key(a.id)).key
        key_b = (await store.create_api_key(b.id)).key
        session = await store.create_session(a.id, "tray")
        jobs = await add_jobs(
            store,
            [
                NewJob(a.id, session.id, f"{n:02}.jpg", f"{a.id}/{n}/original.jpg", 4000, 3000)
                for n in range(JOBS)
            ],
            [],
        )
        projection = Projection(redis)
        await projection.mark_ready()
        app = create_app(settings)
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        serving = asyncio.create_task(server.serve())
        await eventually_async(lambda: server.started, every_s=0.02)  # uvicorn has no event
        staged = Stage(
            f"http://127.0.0.1:{port}",
            redis,
            projection,
            settings,
            key_a,
            key_b,
            str(session.id),
            jobs,
            app,
        )
        for job in jobs:
            await staged.emit(
                job,
                queued=JobEvent.Queued(
                    image_id=str(job.image_id), filename=job.filename, width=4000, height=3000
                ),
            )
        try:
            yield staged
        finally:
            server.should_exit = True
            await serving
            await redis.flushdb()
            await redis.aclose()
            async with await aio_pika.connect(amqp_url) as connection:
                await settings.topology.delete(await connection.channel())


class Stream:
    """One SSE connection: frames parsed as EventSource does (complete frames only)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()
        self.comments: list[str] = []
        self.retry: int | None = None

    async def next(self) -> Event | None:
        """The next event; None when the server ended the stream."""
        fields: dict[str, str] = {}
        async for line in self.lines:
            if not line:
                if "event" in fields or "data" in fields:
                    return Event(fields["id"], fields["event"], json.loads(fields["data"]))
                continue
            if line.startswith(":"):
                self.comments.append(line)
                continue
            name, _, value = line.partition(": ")
            if name == "retry":
                self.retry = int(value)
            else:
                fields[name] = value
        return None


@contextlib.asynccontextmanager
async def connect(
    http: httpx.AsyncClient, url: str, headers: dict[str, str]
) -> AsyncIterator[Stream]:
    async with http.stream("GET", url, headers=headers) as response:
        yield Stream(response)


async def _run_session(stage: Stage, per_job: int, pause_s: float) -> None:
    """Plan every job, then report progress round-robin, then finish them all."""
    for job in stage.jobs:
        await stage.emit(job, planned=JobEvent.Planned(total_slices=SLICES, chunk_count=per_job))
    step = SLICES // per_job
    for k in range(1, per_job + 1):
        for job in stage.jobs:
            await stage.emit(
                job, progress=JobEvent.Progress(slices_done=k * step, total_slices=SLICES)
            )
            await asyncio.sleep(pause_s)
    for job in stage.jobs:
        await stage.emit(job, completed=JobEvent.Completed(counts={"seedling": 3}, detections=3))


async def test_reconnecting_with_last_event_id_loses_and_repeats_nothing(stage: Stage) -> None:
    """100 cuts at random points (after 1..8 events, the id sent as header or query), then a
    last connection until `done`: the events received after the first snapshot are exactly the
    stream's entries after it, in order, each once; a reconnect after `done` gets 204."""
    rng = random.Random(20261124)
    publisher = asyncio.create_task(_run_session(stage, per_job=20, pause_s=0.004))
    received: list[Event] = []
    snapshots: list[Event] = []
    last: str | None = None
    async with httpx.AsyncClient(timeout=10) as http:
        for trial in range(101):
            headers, url = stage.auth(), stage.events_url
            if last is not None:
                if trial % 2:
                    headers["Last-Event-ID"] = last
                else:
                    url += f"?last_event_id={last}"
            async with connect(http, url, headers) as stream:
                assert stream.response.status_code == 200
                assert stream.response.headers["x-accel-buffering"] == "no"
                assert stream.response.headers["cache-control"] == "no-cache"
                wanted = rng.randint(1, 8) if trial < 100 else 10**9
                while wanted:
                    event = await stream.next()
                    if event is None:
                        break
                    (snapshots if event.event == "snapshot" else received).append(event)
                    last, wanted = event.id, wanted - 1
                assert stream.retry == 500
            if received and received[-1].event == "done":
                break
        await publisher
        assert received[-1].event == "done"
        assert last is not None
        after = await http.get(stage.events_url, headers=stage.auth() | {"Last-Event-ID": last})
        assert after.status_code == 204

    assert [s.data["reason"] for s in snapshots] == ["connect"]  # resumed every time after
    entries: Any = await stage.redis.xrange(
        redis_keys.session_events_key(stage.session_id), min=f"({snapshots[0].id}"
    )
    assert [e.id for e in received] == [raw_id.decode() for raw_id, _ in entries]
    assert [e.event for e in received] == [fields[b"type"].decode() for _, fields in entries]
    # And what the client put together is what the session is.
    jobs = {j["job_id"]: j for j in snapshots[0].data["jobs"]}
    jobs |= {e.data["job_id"]: e.data for e in received if e.event == "job"}
    assert {j["status"] for j in jobs.values()} == {"completed"}
    assert received[-1].data["summary"]["completed"] == JOBS
    assert received[-1].data["summary"]["overall_progress_percent"] == 100.0


async def test_an_unknown_or_expired_id_gets_a_fresh_snapshot_not_a_hang(stage: Stage) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        for bad in ("1-0", "garbage", f"{int(time.time() * 1000) + 10**9}-0"):
            async with connect(
                http, stage.events_url, stage.auth() | {"Last-Event-ID": bad}
            ) as stream:
                event = await stream.next()
                assert event is not None
                assert (event.event, event.data["reason"]) == ("snapshot", "resume")
                assert len(event.data["jobs"]) == JOBS
                assert event.data["summary"]["queued"] == JOBS


async def test_an_id_no_redis_stream_has_gets_a_fresh_snapshot_not_an_error(stage: Stage) -> None:
    """Ids too long for Python to read, too large for Redis, or in other digits than ASCII
    (once a 500, or a stream cut at its first read): a snapshot, like any unknown id."""
    async with httpx.AsyncClient(timeout=5) as http:
        for bad in ("9" * 5000 + "-0", f"{2**64}-0", "\u0663-0"):
            async with http.stream(
                "GET", stage.events_url, params={"last_event_id": bad}, headers=stage.auth()
            ) as response:
                assert response.status_code == 200
                event = await Stream(response).next()
                assert event is not None
                assert (event.event, event.data["reason"]) == ("snapshot", "resume")
                assert len(event.data["jobs"]) == JOBS


async def test_an_idle_stream_sends_heartbeats(stage: Stage) -> None:
    open_before = REGISTRY.get_sample_value("tally_sse_connections") or 0
    async with (
        httpx.AsyncClient(timeout=5) as http,
        connect(http, stage.events_url, stage.auth()) as stream,
    ):
        assert (await stream.next()) is not None  # the snapshot
        assert REGISTRY.get_sample_value("tally_sse_connections") == open_before + 1
        reader = asyncio.create_task(stream.next())
        # A heartbeat every 0.3 s here (15 s by default), and no event meanwhile.
        await eventually_async(lambda: len(stream.comments) >= 2, 5)
        assert not reader.done()
        assert all(c.startswith(": heartbeat") for c in stream.comments)
        await stage.emit(
            stage.jobs[0], planned=JobEvent.Planned(total_slices=SLICES, chunk_count=2)
        )
        event = await asyncio.wait_for(reader, 5)
        assert event is not None
        assert (event.event, event.data["total"]) == ("job", SLICES)


async def test_a_finished_session_streams_its_snapshot_and_done(stage: Stage) -> None:
    await _run_session(stage, per_job=1, pause_s=0)
    async with httpx.AsyncClient(timeout=5) as http:
        async with connect(http, stage.events_url, stage.auth()) as stream:
            snapshot, done, end = await stream.next(), await stream.next(), await stream.next()
        assert snapshot is not None
        assert done is not None
        assert (snapshot.event, done.event, end) == ("snapshot", "done", None)
        again = await http.get(stage.events_url, headers=stage.auth() | {"Last-Event-ID": done.id})
        assert again.status_code == 204


async def test_a_big_sessions_subscriber_gets_a_snapshot_page_then_the_rest_and_the_deltas(
    stage: Stage,
) -> None:
    """A snapshot holds the summary and the first page of jobs (here 5 of 12), with the cursor
    of the next; the client reads the rest over HTTP while the stream brings every change, and
    keeping the higher `revision` of each job's copies ends where a fresh read does."""
    stage.settings.sse_snapshot_jobs = 5
    await stage.emit(stage.jobs[0], planned=JobEvent.Planned(total_slices=SLICES, chunk_count=2))
    async with httpx.AsyncClient(timeout=5) as http:
        async with connect(http, stage.events_url, stage.auth()) as stream:
            snapshot = await stream.next()
            assert snapshot is not None
            assert snapshot.event == "snapshot"
            assert [j["filename"] for j in snapshot.data["jobs"]] == [
                f"{n:02}.jpg" for n in range(5)
            ]
            assert snapshot.data["summary"]["total"] == JOBS
            assert snapshot.data["version"] is not None
            jobs = {j["job_id"]: j for j in snapshot.data["jobs"]}

            def keep(job: dict[str, Any]) -> None:
                held = jobs.get(job["job_id"])
                if held is None or job["revision"] > held["revision"]:
                    jobs[job["job_id"]] = job

            # A change to a job of a later page before that page is read, one after.
            await stage.emit(
                stage.jobs[9], planned=JobEvent.Planned(total_slices=SLICES, chunk_count=2)
            )
            cursor = snapshot.data["next_cursor"]
            pages = 0
            while cursor is not None:
                page = await http.get(
                    f"{stage.base}/v1/sessions/{stage.session_id}/jobs",
                    params={"cursor": cursor, "limit": 5},
                    headers=stage.auth(),
                )
                for job in page.json()["jobs"]:
                    keep(job)
                cursor, pages = page.json()["next_cursor"], pages + 1
            assert pages == 2
            await stage.emit(
                stage.jobs[11], progress=JobEvent.Progress(slices_done=4, total_slices=SLICES)
            )
            for _ in range(2):  # the two jobs' frames (each followed by its summary)
                event = await stream.next()
                while event is not None and event.event != "job":
                    event = await stream.next()
                assert event is not None
                keep(event.data)
        fresh = await http.get(
            f"{stage.base}/v1/sessions/{stage.session_id}/jobs",
            params={"limit": 100},
            headers=stage.auth(),
        )
    assert sorted(jobs.values(), key=lambda j: j["filename"]) == fresh.json()["jobs"]


async def test_stream_tokens_are_short_lived_and_scoped(stage: Stage) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        issued = await http.post(
            f"{stage.base}/v1/stream-tokens",
            json={"session_id": stage.session_id},
            headers=stage.auth(),
        )
        assert issued.status_code == 201
        token = issued.json()["token"]
        assert issued.json()["expires_in"] <= 60
        async with connect(http, f"{stage.events_url}?access_token={token}", {}) as stream:
            assert stream.response.status_code == 200
            first = await stream.next()
            assert first is not None
            assert first.event == "snapshot"

        key = stage.settings.stream_token_key()
        a_tenant = stage.jobs[0].tenant_id
        key_id = await stage.key_id(stage.key_a)
        session_id = uuid.UUID(stage.session_id)
        expired = _tokens.issue(
            key, _tokens.StreamGrant(a_tenant, session_id, key_id, int(time.time()) - 1)
        )
        forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
        for bad in (expired, forged, "nonsense"):
            answer = await http.get(f"{stage.events_url}?access_token={bad}")
            assert answer.status_code == 401
            assert answer.json()["error"]["code"] == "unauthenticated"
        other = _tokens.issue(
            key, _tokens.StreamGrant(a_tenant, uuid.uuid4(), key_id, int(time.time()) + 30)
        )
        assert (await http.get(f"{stage.events_url}?access_token={other}")).status_code == 403

        # Another tenant: neither a token for this session nor its stream.
        b = stage.auth(stage.key_b)
        denied = await http.post(
            f"{stage.base}/v1/stream-tokens", json={"session_id": stage.session_id}, headers=b
        )
        assert denied.status_code == 404
        assert (await http.get(stage.events_url, headers=b)).status_code == 404
        assert (await http.get(stage.events_url)).status_code == 401


async def test_subscribers_of_a_session_share_one_reader(stage: Stage) -> None:
    async with httpx.AsyncClient(timeout=5) as http, contextlib.AsyncExitStack() as stack:
        streams = [
            await stack.enter_async_context(connect(http, stage.events_url, stage.auth()))
            for _ in range(5)
        ]
        for stream in streams:
            assert (await stream.next()) is not None
        await stage.emit(
            stage.jobs[3], planned=JobEvent.Planned(total_slices=SLICES, chunk_count=2)
        )
        firsts = [await stream.next() for stream in streams]
        assert len({(e.id, e.event) for e in firsts if e is not None}) == 1
        clients = await stage.redis.client_list()
        readers = [c for c in clients if c["db"] == "13" and c["cmd"].startswith("xread")]
        assert len(readers) == 1  # one reader for the five
    # The clients have gone: so has the reader, at once.
    feeds = stage.app.state.deps.feeds
    await eventually_async(lambda: feeds.feeds == {}, 2, every_s=0.02)


async def test_a_slow_client_skips_to_a_snapshot_and_holds_nobody_up(stage: Stage) -> None:
    """A subscriber whose buffer overflows (here 2 events; its client stopped reading) is told
    so with a fresh snapshot, while the feed goes on for everyone else."""
    deps: Deps = stage.app.state.deps
    tight = dataclasses.replace(deps, feeds=FeedHub(deps.redis, buffer=2))
    slow = session_event_stream(tight, stage.jobs[0].tenant_id, uuid.UUID(stage.session_id), None)
    brisk = session_event_stream(tight, stage.jobs[0].tenant_id, uuid.UUID(stage.session_id), None)
    try:
        for stream in (slow, brisk):
            assert (await anext(stream)).startswith(b"retry:")
            assert b"event: snapshot" in await anext(stream)
        seen = b""
        for n, job in enumerate(stage.jobs[:3], 1):  # 6 frames in all, for buffers of 2
            await stage.emit(job, planned=JobEvent.Planned(total_slices=SLICES, chunk_count=2))
            while seen.count(b"event: summary") < n:  # the brisk client reads each event
                seen += await asyncio.wait_for(anext(brisk), 5)
        assert seen.count(b"event: job") == 3
        assert b"snapshot" not in seen
        lagged = await asyncio.wait_for(anext(slow), 5)
        assert b"event: snapshot" in lagged
        assert b'"reason":"lagged"' in lagged
        snapshot = json.loads(lagged.split(b"data: ", 1)[1])
        assert sum(j["total"] == SLICES for j in snapshot["jobs"]) == 3
    finally:
        await slow.aclose()
        await brisk.aclose()
        await tight.feeds.close()


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def _drain(stream: Stream) -> None:
    while await stream.next() is not None:
        pass


async def _open_count(stage: Stage, key_id: uuid.UUID) -> int:
    return int(await stage.redis.zcard(key_streams_key(key_id)))


async def test_a_key_opens_only_so_many_streams_and_a_closed_one_makes_room(stage: Stage) -> None:
    """A cap of 2 per key: the third open is a 429 before any stream starts, on this replica
    and on any other (the leases are in Redis); closing one lets the next in."""
    tenant_id = stage.jobs[0].tenant_id
    key_id = await stage.key_id(stage.key_a)
    await stage.store.set_tenant_limits(tenant_id, {"streams_per_key": 2})
    async with httpx.AsyncClient(timeout=5) as http, contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(connect(http, stage.events_url, stage.auth()))
        async with connect(http, stage.events_url, stage.auth()) as second:
            for stream in (first, second):
                assert stream.response.status_code == 200
                assert (await stream.next()) is not None
            refused_before = _sample("tally_sse_refused_total", cap="key")
            refused = await http.get(stage.events_url, headers=stage.auth())
            assert refused.status_code == 429
            assert _sample("tally_sse_refused_total", cap="key") == refused_before + 1
            assert refused.headers["retry-after"] == "5"
            assert refused.json()["error"]["code"] == "too_many_streams"
            assert "this API key has 2 streams open" in refused.json()["error"]["message"]
            # Another gateway replica (another process's leases, the same Redis) is full too.
            replica = StreamLeases(stage.redis, stage.store, key_check_s=30, lease_s=90)
            with pytest.raises(TooManyStreamsError):
                await replica.open(key_id, tenant_id, 2, 200)
            assert await _open_count(stage, key_id) == 2
        # The second has gone: its lease with it, and the next open is let in.
        await eventually_async(lambda: _open_count(stage, key_id), 5, until=lambda n: n == 1)
        async with connect(http, stage.events_url, stage.auth()) as third:
            assert third.response.status_code == 200
            assert (await third.next()) is not None
    await eventually_async(lambda: _open_count(stage, key_id), 5, until=lambda n: n == 0)


async def test_a_tenant_opens_only_so_many_streams_whatever_its_keys(stage: Stage) -> None:
    tenant_id = stage.jobs[0].tenant_id
    await stage.store.set_tenant_limits(tenant_id, {"streams_per_tenant": 2})
    other = (await stage.store.create_api_key(tenant_id, scope="read")).key
    async with (
        httpx.AsyncClient(timeout=5) as http,
        connect(http, stage.events_url, stage.auth()) as mine,
        connect(http, stage.events_url, stage.auth(other)) as theirs,
    ):
        assert (mine.response.status_code, theirs.response.status_code) == (200, 200)
        for key in (stage.key_a, other):
            refused = await http.get(stage.events_url, headers=stage.auth(key))
            assert refused.status_code == 429
            assert "this tenant has 2 streams open" in refused.json()["error"]["message"]
        # Another tenant's streams are not this one's.
        b_session = await stage.store.create_session((await _tenant_of(stage, stage.key_b)), "b")
        b_url = f"{stage.base}/v1/sessions/{b_session.id}/events"
        async with connect(http, b_url, stage.auth(stage.key_b)) as b_stream:
            assert b_stream.response.status_code == 200


async def _tenant_of(stage: Stage, key: str) -> uuid.UUID:
    caller = await stage.store.caller_for_api_key(key)
    assert caller is not None
    return caller.tenant.id


async def test_revoking_a_key_ends_its_open_streams_and_refuses_its_tokens(stage: Stage) -> None:
    """Streams opened with the key itself and with a token it minted both end within the
    re-check period (0.2 s here, 30 s by default); a token it minted before the revocation no
    longer opens one; the tenant's other keys go on."""
    tenant_id = stage.jobs[0].tenant_id
    doomed = await stage.store.create_api_key(tenant_id, scope="read")
    async with httpx.AsyncClient(timeout=5) as http:
        tokens = []
        for _ in range(2):
            issued = await http.post(
                f"{stage.base}/v1/stream-tokens",
                json={"session_id": stage.session_id},
                headers=stage.auth(doomed.key),
            )
            assert issued.status_code == 201
            tokens.append(issued.json()["token"])
        async with (
            connect(http, stage.events_url, stage.auth(doomed.key)) as by_header,
            connect(http, f"{stage.events_url}?access_token={tokens[0]}", {}) as by_token,
            connect(http, stage.events_url, stage.auth()) as unrelated,
        ):
            for stream in (by_header, by_token, unrelated):
                assert stream.response.status_code == 200
                assert (await stream.next()) is not None
            revoked_before = _sample("tally_sse_revoked_total")
            assert await stage.store.revoke_api_key(tenant_id, doomed.api_key.id)
            revoked_at = time.monotonic()
            await asyncio.wait_for(asyncio.gather(_drain(by_header), _drain(by_token)), 5)
            ended_after = time.monotonic() - revoked_at
            # The other key's stream is open still: it gets the next event.
            await stage.emit(
                stage.jobs[0], planned=JobEvent.Planned(total_slices=SLICES, chunk_count=2)
            )
            event = await asyncio.wait_for(unrelated.next(), 5)
            assert event is not None
            assert event.event == "job"
        assert ended_after < 2  # a tick is 0.2 s
        assert _sample("tally_sse_revoked_total") == revoked_before + 2
        late = await http.get(f"{stage.events_url}?access_token={tokens[1]}")
        assert late.status_code == 401
        assert late.json()["error"]["code"] == "unauthenticated"
    await eventually_async(lambda: _open_count(stage, doomed.api_key.id), 5, until=lambda n: n == 0)


async def test_an_open_streams_lease_is_refreshed_and_put_back_if_redis_lost_it(
    stage: Stage,
) -> None:
    key_id = await stage.key_id(stage.key_a)
    async with (
        httpx.AsyncClient(timeout=5) as http,
        connect(http, stage.events_url, stage.auth()) as stream,
    ):
        assert (await stream.next()) is not None
        leases = key_streams_key(key_id)
        first: Any = await stage.redis.zrange(leases, 0, -1, withscores=True)
        assert len(first) == 1
        # Refreshed every tick (0.2 s here): the expiry moves on.
        await eventually_async(
            lambda: stage.redis.zscore(leases, first[0][0]), 5, until=lambda s: s > first[0][1]
        )
        await stage.redis.delete(leases)  # Redis lost it (a flush, a failover)
        await eventually_async(lambda: _open_count(stage, key_id), 5, until=lambda n: n == 1)
    await eventually_async(lambda: _open_count(stage, key_id), 5, until=lambda n: n == 0)


async def test_streams_that_end_together_free_their_places_together(stage: Stage) -> None:
    """A thousand streams ending at once (the edge restarted) each need their lease removed:
    none is left to hold its place for a whole lease for want of a Redis connection."""
    leases = StreamLeases(stage.redis, stage.store, key_check_s=30, lease_s=90)
    key_id, tenant_id = uuid.uuid4(), uuid.uuid4()
    try:
        streams = [await leases.open(key_id, tenant_id, 1000, 1000) for _ in range(1000)]
        assert await stage.redis.zcard(key_streams_key(key_id)) == 1000
        await asyncio.gather(*(leases.release(s) for s in streams))
        assert await stage.redis.zcard(key_streams_key(key_id)) == 0
        assert await stage.redis.zcard(tenant_streams_key(tenant_id)) == 0
    finally:
        await leases.close()
