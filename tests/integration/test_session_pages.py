"""A session's jobs in pages and in deltas (`GET /v1/sessions/{sid}/jobs?limit=&cursor=&since=`),
through the real gateway app on real Redis and PostgreSQL, the projection written by the
projector's own fold."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from redis.asyncio import Redis
from tests.gateway_app import REDIS_URL, gateway_settings, serving

from tally_contracts import projection as redis_keys
from tally_contracts import sequence
from tally_contracts.v1 import JobEvent, JobRef
from tally_db import Job, Store
from tally_projector.projection import Projection
from tally_projector.rebuild import rebuild
from tally_upload._records import NewJob, add_jobs

pytestmark = pytest.mark.integration
JOBS = 25


@dataclass
class Bench:
    http: httpx.AsyncClient
    redis: Redis
    store: Store
    projection: Projection
    key: str
    other_key: str
    session_id: str
    jobs: list[Job]
    sequences: dict[uuid.UUID, int] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"/v1/sessions/{self.session_id}/jobs"

    async def poll(self, key: str | None = None, **query: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key or self.key}"}
        return await self.http.get(self.url, params=query, headers=headers)

    async def ok(self, **query: Any) -> dict[str, Any]:
        response = await self.poll(**query)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def progress(self, job: Job, done: int) -> None:
        number = self.sequences.get(job.id, sequence.STARTED) + 1
        self.sequences[job.id] = number
        await self.projection.fold(
            _event(job, number, progress=JobEvent.Progress(slices_done=done, total_slices=40))
        )

    async def delete(self, job: Job) -> None:
        gone = _event(job, sequence.DELETED)
        gone.deleted.SetInParent()
        await self.projection.fold(gone)


def _event(job: Job, number: int, **kind: Any) -> JobEvent:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    ref = JobRef(tenant_id=str(job.tenant_id), session_id=str(job.session_id), job_id=str(job.id))
    return JobEvent(
        event_id=uuid.uuid4().hex, job=ref, sequence=number, emitted_at=stamp, source="test", **kind
    )


@pytest.fixture
async def bench(database: str, s3_endpoint: str, amqp_url: str) -> AsyncIterator[Bench]:
    redis = Redis.from_url(REDIS_URL)
    await redis.flushdb()
    settings = gateway_settings(database, s3_endpoint, amqp_url, "unused")
    async with Store.open(database) as store:
        a, b = await store.create_tenant("a"), await store.create_tenant("b")
        key, other_key = (
            (await store.create_api_key(a.id)).key,
            (await store.create_api_key(b.id)).key,
        )
        session = await store.create_session(a.id, "bench 4")
        jobs = await add_jobs(
            store,
            [
                NewJob(a.id, session.id, f"{n:02}.jpg", f"{a.id}/{n}/original.jpg", 400, 300)
                for n in range(JOBS)
            ],
            [],
        )
        projection = Projection(redis)
        await projection.mark_ready()
        for job in jobs:
            queued = JobEvent.Queued(
                image_id=str(job.image_id), filename=job.filename, width=400, height=300
            )
            await projection.fold(_event(job, sequence.QUEUED, queued=queued))
        async with serving(settings) as (_, http):
            yield Bench(http, redis, store, projection, key, other_key, str(session.id), jobs)
    await redis.flushdb()
    await redis.aclose()


def _names(body: dict[str, Any]) -> list[str]:
    return [j["filename"] for j in body["jobs"]]


async def test_pages_follow_the_cursor_through_every_job_once_in_upload_order(
    bench: Bench,
) -> None:
    seen: list[str] = []
    body = await bench.ok(limit=10)
    pages = [len(body["jobs"])]
    seen += _names(body)
    while body["next_cursor"] is not None:
        body = await bench.ok(limit=10, cursor=body["next_cursor"])
        pages.append(len(body["jobs"]))
        seen += _names(body)
    assert pages == [10, 10, 5]
    assert seen == [f"{n:02}.jpg" for n in range(JOBS)]
    assert body["summary"]["total"] == JOBS  # every page: the whole session's summary
    assert not {"since", "reload"} & set(body)


async def test_a_page_keeps_its_place_when_jobs_before_it_are_deleted(bench: Bench) -> None:
    first = await bench.ok(limit=10)
    for job in bench.jobs[3:10]:  # the rest of the first page, the cursor's own job too
        await bench.delete(job)
    second = await bench.ok(limit=10, cursor=first["next_cursor"])
    assert _names(second) == [f"{n:02}.jpg" for n in range(10, 20)]
    again = await bench.ok(limit=10)
    assert _names(again) == [f"{n:02}.jpg" for n in (0, 1, 2, *range(10, 17))]


async def test_the_default_page_and_an_unchanged_page_answer_304(bench: Bench) -> None:
    response = await bench.poll()
    assert len(response.json()["jobs"]) == JOBS  # under the default page size: all of them
    assert response.json()["next_cursor"] is None
    etag = response.headers["etag"]
    again = await bench.http.get(
        bench.url,
        headers={"Authorization": f"Bearer {bench.key}", "If-None-Match": etag},
    )
    assert again.status_code == 304
    await bench.progress(bench.jobs[24], 10)
    moved = await bench.http.get(
        bench.url,
        headers={"Authorization": f"Bearer {bench.key}", "If-None-Match": etag},
    )
    assert moved.status_code == 200
    assert moved.headers["etag"] != etag
    assert moved.json()["jobs"][24]["processed"] == 10


async def test_since_answers_only_the_jobs_that_changed_each_once_at_its_latest(
    bench: Bench,
) -> None:
    start = await bench.ok(limit=5)
    version = start["version"]
    twice, once = bench.jobs[20], bench.jobs[7]
    await bench.progress(twice, 10)
    await bench.progress(once, 20)
    await bench.progress(twice, 30)  # changed twice: shown once, as it is now

    delta = await bench.ok(since=version)
    assert delta["since"] == version
    assert [(j["filename"], j["processed"]) for j in delta["jobs"]] == [
        ("07.jpg", 20),
        ("20.jpg", 30),
    ]
    assert (delta["deleted"], delta["more"]) == ([], False)
    assert delta["summary"]["processing"] == 2
    assert delta["version"] != version
    assert [j["revision"] for j in delta["jobs"]] == sorted(j["revision"] for j in delta["jobs"])

    nothing = await bench.ok(since=delta["version"])
    assert (nothing["jobs"], nothing["deleted"], nothing["version"]) == ([], [], delta["version"])


async def test_a_delta_longer_than_its_limit_continues_from_where_it_stopped(
    bench: Bench,
) -> None:
    version = (await bench.ok())["version"]
    for n, job in enumerate(bench.jobs[:5]):
        await bench.progress(job, n + 1)
    first = await bench.ok(since=version, limit=3)
    assert (_names(first), first["more"]) == (["00.jpg", "01.jpg", "02.jpg"], True)
    rest = await bench.ok(since=first["version"], limit=3)
    assert (_names(rest), rest["more"]) == (["03.jpg", "04.jpg"], False)


async def test_a_deleted_job_is_told_in_the_delta_and_leaves_the_pages(bench: Bench) -> None:
    version = (await bench.ok())["version"]
    gone = bench.jobs[4]
    await bench.delete(gone)
    delta = await bench.ok(since=version)
    assert (delta["jobs"], delta["deleted"]) == ([], [str(gone.id)])
    assert delta["summary"]["total"] == JOBS - 1
    assert "04.jpg" not in _names(await bench.ok())


async def test_a_version_from_before_redis_lost_the_projection_says_reload(bench: Bench) -> None:
    old = (await bench.ok())["version"]
    await bench.progress(bench.jobs[0], 5)
    await bench.redis.flushdb()  # Redis restarted empty; the projector rebuilds from PostgreSQL
    await rebuild(bench.store, bench.projection)

    answer = await bench.ok(since=old, limit=10)
    assert answer["reload"] is True
    assert answer["since"] == old
    assert _names(answer) == [f"{n:02}.jpg" for n in range(10)]  # the first page, to start over
    assert answer["next_cursor"] is not None
    assert answer["version"] != old
    assert (await bench.ok(since=answer["version"]))["jobs"] == []  # deltas go on from there


async def test_a_version_from_the_future_or_another_epoch_says_reload(bench: Bench) -> None:
    epoch, rev = (await bench.ok())["version"].split(".")
    for since in (f"{epoch}.{int(rev) + 1000}", f"1{epoch}.{rev}", "0.0"):
        answer = await bench.ok(since=since)
        assert answer["reload"] is True, since
        assert len(answer["jobs"]) == JOBS


async def test_without_the_projection_pages_come_from_postgresql_and_since_reloads(
    bench: Bench,
) -> None:
    version = (await bench.ok())["version"]
    await bench.redis.delete(redis_keys.READY_KEY)  # lost: readers go to PostgreSQL
    first = await bench.ok(limit=20)
    assert first["version"] is None
    rest = await bench.ok(limit=20, cursor=first["next_cursor"])
    assert _names(first) + _names(rest) == [f"{n:02}.jpg" for n in range(JOBS)]
    assert rest["next_cursor"] is None
    reload = await bench.ok(since=version)
    assert (reload["reload"], len(reload["jobs"])) == (True, JOBS)


@pytest.mark.parametrize(
    "query",
    [
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": "ten"},
        {"limit": "-1"},
        {"limit": "٣"},  # a digit, but not an ASCII one
        {"limit": "9" * 400},
        {"cursor": "nonsense"},
        {"cursor": "0001764608400500000:" + str(uuid.uuid4())},
        {"since": "yesterday"},
        {"since": "1.2.3"},
        {"since": "1." + "9" * 400},
        {"since": "1.2", "cursor": "0001764608400500000"},
    ],
)
async def test_a_bad_limit_cursor_or_since_is_a_422_in_the_envelope(
    bench: Bench, query: dict[str, str]
) -> None:
    response = await bench.poll(**query)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


async def test_another_tenants_session_is_not_found_with_any_question(bench: Bench) -> None:
    version = (await bench.ok())["version"]
    for query in ({}, {"since": version}, {"limit": "5"}):
        response = await bench.poll(bench.other_key, **query)
        assert response.status_code == 404
