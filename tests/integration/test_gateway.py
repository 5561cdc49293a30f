"""The gateway's read API on real PostgreSQL, Redis and moto S3."""

from __future__ import annotations

import base64
import io
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from google.protobuf.timestamp_pb2 import Timestamp
from PIL import Image
from redis.asyncio import Redis
from tests.gateway_app import REDIS_URL, gateway_settings, serving
from tests.openapi_conformance import Conformance

from tally_bus import Topology, decode
from tally_contracts import cancellation
from tally_contracts.v1 import Cancel, JobEvent, JobRef
from tally_db import Caller, Job, Store
from tally_gateway.app import create_app
from tally_gateway.config import Settings
from tally_gateway.deps import Deps
from tally_orchestrator._records import Records
from tally_projector.projection import Projection
from tally_stack import free_port
from tally_stack.local_s3 import MOTO_ACCESS_KEY, MOTO_SECRET_KEY
from tally_storage import ObjectStore, S3Settings, keys
from tally_upload._records import NewJob, add_jobs
from tally_web import RateLimiter
from tally_web.limits import Limits
from tally_web.ratelimit import caller_buckets, tenant_buckets

pytestmark = pytest.mark.integration


@dataclass
class World:
    http: httpx.AsyncClient
    redis: Redis
    key_a: str
    key_b: str
    session_id: str
    done: Job
    waiting: Job
    app: FastAPI

    def auth(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}


def _event(job: Job, sequence: int, **kind: Any) -> JobEvent:
    stamp = Timestamp()
    stamp.GetCurrentTime()  # distinct per event: jobs list in upload order
    ref = JobRef(tenant_id=str(job.tenant_id), session_id=str(job.session_id), job_id=str(job.id))
    return JobEvent(
        event_id=uuid.uuid4().hex,
        job=ref,
        sequence=sequence,
        emitted_at=stamp,
        source="test",
        **kind,
    )


@pytest.fixture
async def world(database: str, s3_endpoint: str, amqp_url: str) -> AsyncIterator[World]:
    bucket = f"gw-{uuid.uuid4().hex[:10]}"
    s3 = S3Settings(
        bucket=bucket,
        endpoint_url=s3_endpoint,
        access_key_id=MOTO_ACCESS_KEY,
        secret_access_key=MOTO_SECRET_KEY,
    )
    redis = Redis.from_url(REDIS_URL)
    await redis.flushdb()
    async with Store.open(database) as store, ObjectStore.open(s3, create_bucket=True) as objects:
        a, b = await store.create_tenant("a"), await store.create_tenant("b")
        key_a = (await store.create_api_key(a.id)).key
        key_b = (await store.create_api_key(b.id)).key
        session = await store.create_session(a.id, "tray 7")
        prefix = f"{a.id}/{session.id}"
        done, waiting = await add_jobs(
            store,
            [
                NewJob(a.id, session.id, "one.jpg", f"{prefix}/1/original.jpg", 4000, 3000),
                NewJob(a.id, session.id, "two.jpg", f"{prefix}/2/original.jpg", 4000, 3000),
            ],
            [],
        )
        counts = {"seedling": 2, "weed": 0}
        result = {
            "job_id": str(done.id),
            "width": 4000,
            "height": 3000,
            "counts": counts,
            "detections": [
                {"bbox": [1, 2, 30, 40], "score": 0.9, "label": "seedling"},
                {"bbox": [50, 60, 90, 99], "score": 0.8, "label": "seedling"},
            ],
        }
        await objects.put_bytes(keys.result(done.object_key), json.dumps(result).encode(), "x")
        await objects.put_bytes(keys.thumbnail(done.object_key), b"\xff\xd8thumb", "image/jpeg")
        records = Records(store, Topology())
        await records.plan_job(a.id, done.id, 88, 2, [])
        await records.complete_job(a.id, done.id, counts, 2, keys.result(done.object_key), [], [])
        projection = Projection(redis)
        await projection.mark_ready()
        for job in (done, waiting):
            await projection.fold(
                _event(
                    job,
                    1,
                    queued=JobEvent.Queued(
                        image_id=str(job.image_id), filename=job.filename, width=4000, height=3000
                    ),
                )
            )
        await projection.fold(
            _event(done, 2, planned=JobEvent.Planned(total_slices=88, chunk_count=2))
        )
        await projection.fold(
            _event(done, 3, progress=JobEvent.Progress(slices_done=44, total_slices=88))
        )
        settings = gateway_settings(database, s3_endpoint, amqp_url, bucket)
        async with serving(settings) as (app, http):
            yield World(http, redis, key_a, key_b, str(session.id), done, waiting, app)
    await redis.flushdb()
    await redis.aclose()


async def test_polling_shows_each_jobs_live_state_and_the_summary(world: World) -> None:
    response = await world.http.get(
        f"/v1/sessions/{world.session_id}/jobs", headers=world.auth(world.key_a)
    )
    assert response.status_code == 200
    body = response.json()
    assert body["poll_interval_ms"] == 2000  # a job is processing: poll sooner
    assert response.headers["cache-control"] == "no-cache"
    one, two = body["jobs"]
    assert (one["filename"], one["status"], one["processed"], one["total"]) == (
        "one.jpg",
        "processing",
        44,
        88,
    )
    assert one["progress_percent"] == 50.0
    assert (two["status"], two["progress_percent"]) == ("queued", None)
    assert body["summary"]["total"] == 2
    assert (body["summary"]["processing"], body["summary"]["queued"]) == (1, 1)
    assert body["summary"]["overall_progress_percent"] == 50.0


async def test_with_redis_wiped_the_answer_comes_from_postgresql(world: World) -> None:
    await world.redis.flushdb()
    body = (
        await world.http.get(
            f"/v1/sessions/{world.session_id}/jobs", headers=world.auth(world.key_a)
        )
    ).json()
    assert [(j["filename"], j["status"]) for j in body["jobs"]] == [
        ("one.jpg", "completed"),
        ("two.jpg", "queued"),
    ]
    detail = (
        await world.http.get(f"/v1/jobs/{world.done.id}", headers=world.auth(world.key_a))
    ).json()
    assert detail["result"] == {"counts": {"seedling": 2, "weed": 0}}
    assert detail["progress_percent"] == 100.0


async def test_results_come_in_original_pixels_once_completed(world: World) -> None:
    result = await world.http.get(
        f"/v1/jobs/{world.done.id}/result", headers=world.auth(world.key_a)
    )
    assert result.status_code == 200
    assert result.json()["counts"] == {"seedling": 2, "weed": 0}
    assert result.json()["detections"][0]["bbox"] == [1, 2, 30, 40]
    pending = await world.http.get(
        f"/v1/jobs/{world.waiting.id}/result", headers=world.auth(world.key_a)
    )
    assert pending.status_code == 409
    thumb = await world.http.get(
        f"/v1/jobs/{world.done.id}/thumbnail", headers=world.auth(world.key_a)
    )
    assert (thumb.status_code, thumb.headers["content-type"]) == (200, "image/jpeg")


async def test_another_tenant_sees_nothing_but_404(world: World) -> None:
    b = world.auth(world.key_b)
    for path in (
        f"/v1/sessions/{world.session_id}",
        f"/v1/sessions/{world.session_id}/jobs",
        f"/v1/jobs/{world.done.id}",
        f"/v1/jobs/{world.done.id}/result",
        f"/v1/jobs/{world.done.id}/thumbnail",
        f"/v1/jobs/{uuid.uuid4()}",
    ):
        response = await world.http.get(path, headers=b)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"
    assert (await world.http.get(f"/v1/jobs/{world.done.id}")).status_code == 401


async def test_session_detail_and_health(world: World) -> None:
    session = (
        await world.http.get(f"/v1/sessions/{world.session_id}", headers=world.auth(world.key_a))
    ).json()
    assert (session["name"], session["summary"]["total"]) == ("tray 7", 2)
    ready = await world.http.get("/readyz")
    assert ready.json()["checks"] == {
        "started": True,
        "database": True,
        "redis": True,
        "bus": True,
    }


async def test_an_unchanged_poll_answers_304_and_a_change_gives_a_new_etag(world: World) -> None:
    path, auth = f"/v1/sessions/{world.session_id}/jobs", world.auth(world.key_a)
    first = await world.http.get(path, headers=auth)
    etag = first.headers["etag"]
    assert (await world.http.get(path, headers=auth)).headers["etag"] == etag
    unchanged = await world.http.get(path, headers={**auth, "If-None-Match": f"W/{etag}"})
    assert (unchanged.status_code, unchanged.content) == (304, b"")
    assert unchanged.headers["etag"] == etag

    projection = Projection(world.redis)
    await projection.fold(
        _event(world.done, 4, progress=JobEvent.Progress(slices_done=60, total_slices=88))
    )
    changed = await world.http.get(path, headers={**auth, "If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert changed.json()["jobs"][0]["processed"] == 60


async def test_the_poll_interval_lengthens_once_everything_has_finished(world: World) -> None:
    projection = Projection(world.redis)
    for job in (world.done, world.waiting):
        await projection.fold(_event(job, 2**62, completed=JobEvent.Completed(detections=0)))
    body = (
        await world.http.get(
            f"/v1/sessions/{world.session_id}/jobs", headers=world.auth(world.key_a)
        )
    ).json()
    assert body["poll_interval_ms"] == 30000


async def test_the_job_list_filters_sorts_and_pages_with_a_cursor(world: World) -> None:
    auth = world.auth(world.key_a)
    newest = (await world.http.get("/v1/jobs", headers=auth)).json()
    assert [j["filename"] for j in newest["jobs"]] == ["two.jpg", "one.jpg"]
    assert newest["next_cursor"] is None
    oldest = (await world.http.get("/v1/jobs?sort=created_at", headers=auth)).json()
    assert [j["filename"] for j in oldest["jobs"]] == ["one.jpg", "two.jpg"]
    assert oldest["jobs"][0]["processed"] == 44  # live from the projection

    first = (await world.http.get("/v1/jobs?limit=1", headers=auth)).json()
    assert [j["filename"] for j in first["jobs"]] == ["two.jpg"]
    second = (
        await world.http.get(f"/v1/jobs?limit=1&cursor={first['next_cursor']}", headers=auth)
    ).json()
    assert [j["filename"] for j in second["jobs"]] == ["one.jpg"]
    assert second["next_cursor"] is None

    completed = (await world.http.get("/v1/jobs?status=completed", headers=auth)).json()
    assert [j["job_id"] for j in completed["jobs"]] == [str(world.done.id)]
    mine = (await world.http.get(f"/v1/jobs?session_id={world.session_id}", headers=auth)).json()
    assert len(mine["jobs"]) == 2
    assert (await world.http.get("/v1/jobs", headers=world.auth(world.key_b))).json() == {
        "jobs": [],
        "next_cursor": None,
        "poll_interval_ms": 5000,
    }
    bad = await world.http.get("/v1/jobs?cursor=nonsense", headers=auth)
    assert (bad.status_code, bad.json()["error"]["code"]) == (422, "invalid_cursor")
    # A well-formed pair whose time has no UTC offset: it was taken as some other time (a page
    # from the wrong place, 200); a cursor of ours always has one.
    naive = base64.urlsafe_b64encode(
        json.dumps(["2026-12-01T12:00:00", str(uuid.uuid4())]).encode()
    ).decode()
    bad = await world.http.get("/v1/jobs", params={"cursor": naive}, headers=auth)
    assert (bad.status_code, bad.json()["error"]["code"]) == (422, "invalid_cursor")


async def test_job_detail_carries_its_recent_log_newest_first(world: World) -> None:
    detail = (
        await world.http.get(f"/v1/jobs/{world.done.id}", headers=world.auth(world.key_a))
    ).json()
    assert [e["event"] for e in detail["logs"]] == ["progress", "planned", "queued"]
    assert detail["logs"][0]["message"] == "44 of 88 slices"


async def _cancels(world: World) -> list[Cancel]:
    bus = world.app.state.deps.bus
    channel = await bus.connection.channel()
    queue = await channel.get_queue(bus.topology.cancels_queue.name, ensure=False)
    got = []
    while (message := await queue.get(fail=False, no_ack=True)) is not None:
        got.append(decode(message, Cancel))
    return got


async def test_cancel_requests_go_to_the_orchestrator_and_mark_the_work(world: World) -> None:
    a, b = world.auth(world.key_a), world.auth(world.key_b)
    waiting, done = str(world.waiting.id), str(world.done.id)

    assert (await world.http.post(f"/v1/jobs/{waiting}/cancel", headers=b)).status_code == 404
    other = await world.http.post(f"/v1/sessions/{world.session_id}/cancel", headers=b)
    assert other.status_code == 404
    assert await _cancels(world) == []  # another tenant's request reaches nobody

    finished = await world.http.post(f"/v1/jobs/{done}/cancel", headers=a)
    assert (finished.status_code, finished.json()["error"]["code"]) == (409, "already_final")

    accepted = await world.http.post(f"/v1/jobs/{waiting}/cancel", headers=a)
    assert (accepted.status_code, accepted.json()["status"]) == (202, "cancelling")
    whole = await world.http.post(f"/v1/sessions/{world.session_id}/cancel", headers=a)
    assert (whole.status_code, whole.json()["jobs"]) == (202, 1)

    job_cancel, session_cancel = await _cancels(world)
    assert (job_cancel.job.job_id, job_cancel.job.session_id) == (waiting, world.session_id)
    assert (session_cancel.job.job_id, session_cancel.job.session_id) == ("", world.session_id)
    assert session_cancel.job.tenant_id == str(world.waiting.tenant_id)
    assert (
        await world.redis.exists(
            cancellation.job_key(waiting), cancellation.session_key(world.session_id)
        )
        == 2
    )


async def test_status_reads_fall_back_to_postgresql_while_redis_is_unreachable(
    world: World,
) -> None:
    """Redis down (here: a port nobody listens on): polling, a job's detail and the job list
    answer from PostgreSQL, the system of record, instead of failing."""
    deps = world.app.state.deps
    unreachable = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    world.app.state.deps = Deps.build(
        deps.settings, deps.store, unreachable, deps.objects, deps.bus, deps.relay
    )
    try:
        auth = world.auth(world.key_a)
        polled = await world.http.get(f"/v1/sessions/{world.session_id}/jobs", headers=auth)
        assert polled.status_code == 200
        assert [j["status"] for j in polled.json()["jobs"]] == ["completed", "queued"]
        detail = await world.http.get(f"/v1/jobs/{world.done.id}", headers=auth)
        assert detail.status_code == 200
        assert (detail.json()["status"], detail.json()["logs"]) == ("completed", [])
        listed = await world.http.get("/v1/jobs", headers=auth)
        assert listed.status_code == 200
        assert len(listed.json()["jobs"]) == 2
        other = await world.http.get(
            f"/v1/sessions/{world.session_id}/jobs", headers=world.auth(world.key_b)
        )
        assert other.status_code == 404  # still no other tenant's data
    finally:
        await world.app.state.deps.feeds.close()
        world.app.state.deps = deps
        await unreachable.aclose()


async def test_sessions_are_listed_newest_first_and_active_ones_can_be_asked_for(
    world: World,
) -> None:
    auth = world.auth(world.key_a)
    listed = await world.http.get("/v1/sessions", headers=auth)
    assert listed.status_code == 200
    assert [s["session_id"] for s in listed.json()["sessions"]] == [world.session_id]
    assert listed.json()["sessions"][0]["name"] == "tray 7"
    active = await world.http.get("/v1/sessions", params={"active": "true"}, headers=auth)
    assert [s["session_id"] for s in active.json()["sessions"]] == [world.session_id]
    other = await world.http.get("/v1/sessions", headers=world.auth(world.key_b))
    assert other.json()["sessions"] == []


async def test_the_job_list_tells_dashboards_how_often_to_poll(world: World) -> None:
    listed = await world.http.get("/v1/jobs", headers=world.auth(world.key_a))
    assert listed.json()["poll_interval_ms"] == 2000  # a job is processing


async def test_a_finished_job_can_be_deleted_and_is_gone_everywhere(world: World) -> None:
    """409 while it runs; once deleted: 404 for the job, its result and thumbnail, the list no
    longer has it, a second delete is 404; another tenant cannot delete it."""
    auth = world.auth(world.key_a)
    assert (
        await world.http.delete(f"/v1/jobs/{world.waiting.id}", headers=auth)
    ).status_code == 409
    foreign = await world.http.delete(f"/v1/jobs/{world.done.id}", headers=world.auth(world.key_b))
    assert foreign.status_code == 404
    assert (await world.http.delete(f"/v1/jobs/{world.done.id}", headers=auth)).status_code == 204

    for path in ("", "/result", "/thumbnail", "/photo"):
        gone = await world.http.get(f"/v1/jobs/{world.done.id}{path}", headers=auth)
        assert gone.status_code == 404, path
    listed = await world.http.get("/v1/jobs", headers=auth)
    assert [j["job_id"] for j in listed.json()["jobs"]] == [str(world.waiting.id)]
    assert (await world.http.delete(f"/v1/jobs/{world.done.id}", headers=auth)).status_code == 404


async def test_the_other_answers_match_their_declared_schemas_too(world: World) -> None:
    """The answers no test above asks for, each checked by the client's conformance hook."""
    a, b = world.auth(world.key_a), world.auth(world.key_b)
    token = await world.http.post(
        "/v1/stream-tokens", json={"session_id": world.session_id}, headers=a
    )
    assert (token.status_code, token.json()["session_id"]) == (201, world.session_id)
    foreign = await world.http.post(
        "/v1/stream-tokens", json={"session_id": world.session_id}, headers=b
    )
    assert foreign.status_code == 404
    photo = await world.http.get(f"/v1/jobs/{world.done.id}/photo", headers=a)
    assert photo.status_code == 404  # the world stored no original
    assert (await world.http.get("/healthz")).json() == {"status": "ok"}
    assert (await world.http.get("/metrics")).status_code == 200
    for path in (
        "/v1/sessions/not-a-session",
        "/v1/jobs/not-a-job",
        "/v1/jobs?limit=0",
        "/v1/sessions?limit=1000",
        "/v1/jobs?status=lost",
    ):
        invalid = await world.http.get(path, headers=a)
        assert (invalid.status_code, invalid.json()["error"]["code"]) == (422, "invalid_request")
    empty = await world.http.post("/v1/stream-tokens", json={}, headers=a)
    assert empty.status_code == 422
    assert (await world.http.get("/v1/sessions/not-a-session/jobs", headers=a)).status_code == 404


def test_an_answer_its_route_does_not_declare_fails_the_conformance_check() -> None:
    """The check the hook makes can fail: an extra field, a missing or mistyped one, an
    undeclared status or content type."""
    conformance = Conformance(create_app(Settings()))
    job_id = str(uuid.uuid4())
    good = {"job_id": job_id, "status": "cancelling"}
    path = f"/v1/jobs/{job_id}/cancel"

    def check(status: int, body: object, content_type: str = "application/json") -> None:
        conformance.validate("POST", path, status, content_type, json.dumps(body).encode())

    check(202, good)
    check(404, {"error": {"code": "not_found", "message": "no job"}})
    for status, bad in (
        (202, good | {"extra": 1}),
        (202, {"job_id": job_id}),
        (202, good | {"job_id": "not-a-uuid"}),
        (202, good | {"status": "cancelled"}),
        (404, {"error": {"code": "not_found"}}),
        (500, {"error": {"code": "internal", "message": "boom"}}),
    ):
        with pytest.raises(AssertionError):
            check(status, bad)
    with pytest.raises(AssertionError):
        check(202, good, "text/html")
    # The poll body, serialised by hand, is held to its declared schema as well.
    poll = f"/v1/sessions/{uuid.uuid4()}/jobs"
    counts = dict.fromkeys(("total", "queued", "processing", "completed", "failed", "cancelled"), 0)
    summary = counts | {"overall_progress_percent": None, "eta_seconds": None}
    summary |= {"eta_range": None, "eta_reason": None, "eta_at": None}
    polled: dict[str, Any] = {
        "session_id": job_id,
        "version": "1764608400123.7",
        "jobs": [],
        "summary": summary,
        "last_updated": None,
        "poll_interval_ms": 5000,
    }
    conformance.validate("GET", poll, 200, "application/json", json.dumps(polled).encode())
    del summary["cancelled"]
    with pytest.raises(AssertionError):
        conformance.validate("GET", poll, 200, "application/json", json.dumps(polled).encode())


async def test_usage_by_day_with_its_totals_queued_work_and_limits_for_a_read_key(
    world: World,
) -> None:
    store: Store = world.app.state.deps.store
    tenant_id = world.done.tenant_id
    await store.set_tenant_limits(tenant_id, {"queued_slices": 5000})
    reader = (await store.create_api_key(tenant_id, "read")).key
    session = await store.create_session(tenant_id)
    await add_jobs(
        store, [NewJob(tenant_id, session.id, "three.jpg", "k/3", 4000, 3000, 88, 5000)], []
    )
    today = await store.pool.fetchval("SELECT (now() AT TIME ZONE 'UTC')::date")
    await store.pool.execute(
        """INSERT INTO usage_daily (tenant_id, day, photos, slices, bytes)
           VALUES ($1, $2, 4, 352, 20000), ($1, $3, 1, 1, 1)""",
        tenant_id,
        today - timedelta(days=2),
        today - timedelta(days=40),  # outside the range asked
    )
    start = (today - timedelta(days=3)).isoformat()
    response = await world.http.get(
        "/v1/usage", params={"from": start, "to": today.isoformat()}, headers=world.auth(reader)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["tenant_id"], body["from"], body["to"]) == (
        str(tenant_id),
        start,
        today.isoformat(),
    )
    assert [(d["day"], d["photos"], d["slices"], d["bytes"]) for d in body["days"]] == [
        (start, 0, 0, 0),
        ((today - timedelta(days=2)).isoformat(), 4, 352, 20000),
        ((today - timedelta(days=1)).isoformat(), 0, 0, 0),
        # The fixture's two jobs (planned before slices were counted) and the one above.
        (today.isoformat(), 3, 88, 5000),
    ]
    assert body["totals"] == {"photos": 7, "slices": 440, "bytes": 25000}
    assert body["queued"] == {"photos": 2, "slices": 88}  # `two.jpg` (0 planned) and three
    assert body["limits"] == {
        "queued_slices": 5000,
        "queued_photos": 10_000,
        "daily_slices": 2_000_000,
        "monthly_slices": 30_000_000,
        "max_slices_per_photo": 2_000,
        "max_pixels_per_request": 1_000_000_000,
    }

    recent = (await world.http.get("/v1/usage", headers=world.auth(reader))).json()
    assert len(recent["days"]) == 30
    assert recent["to"] == today.isoformat()
    other = (await world.http.get("/v1/usage", headers=world.auth(world.key_b))).json()
    assert other["totals"] == {"photos": 0, "slices": 0, "bytes": 0}
    assert other["queued"] == {"photos": 0, "slices": 0}


@pytest.mark.parametrize(
    "params",
    [
        {"from": "2026-02-30"},
        {"from": "20260101"},
        {"to": "\uff12\uff10\uff12\uff16-01-01"},  # digits, but not ASCII ones (fullwidth)
        {"from": "2026-03-02", "to": "2026-03-01"},
        {"from": "2025-01-01", "to": "2026-01-02"},  # 367 days
        {"from": "2999-01-01"},  # after today, the default `to`
    ],
    ids=["no-such-day", "not-dashed", "non-ascii", "backwards", "over-366-days", "future"],
)
async def test_usage_of_days_that_are_not_a_range_is_a_422_in_the_envelope(
    world: World, params: dict[str, str]
) -> None:
    response = await world.http.get("/v1/usage", params=params, headers=world.auth(world.key_a))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_request"
    assert (
        await world.http.get(
            "/v1/usage",
            params={"from": "2025-01-01", "to": "2026-01-01"},  # 366 days: the most
            headers=world.auth(world.key_a),
        )
    ).status_code == 200


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (30, 120, 40)).save(buffer, format="JPEG")
    return buffer.getvalue()


async def test_downloads_cannot_be_sniffed_or_run_as_a_page_whatever_they_carry(
    world: World,
) -> None:
    """A JPEG with HTML after it (a valid photo to Pillow) comes back as the uploaded bytes,
    typed by the format upload stored it as (not by the object's stored content type or the
    client's name), never sniffed, sandboxed, and named after the client's file."""
    laced = _jpeg() + b"<html><body><script>alert(document.cookie)</script></body></html>"
    objects: ObjectStore = world.app.state.deps.objects
    await objects.put_bytes(world.done.object_key, laced, "text/html")
    a = world.auth(world.key_a)
    photo = await world.http.get(f"/v1/jobs/{world.done.id}/photo", headers=a)
    assert (photo.status_code, photo.content) == (200, laced)
    assert photo.headers["content-type"] == "image/jpeg"
    assert photo.headers["x-content-type-options"] == "nosniff"
    assert photo.headers["content-security-policy"] == "default-src 'none'; sandbox"
    assert photo.headers["content-disposition"] == (
        "inline; filename=\"one.jpg\"; filename*=UTF-8''one.jpg"
    )
    thumb = await world.http.get(f"/v1/jobs/{world.done.id}/thumbnail", headers=a)
    assert thumb.headers["content-type"] == "image/jpeg"
    assert thumb.headers["x-content-type-options"] == "nosniff"
    assert thumb.headers["content-security-policy"] == "default-src 'none'; sandbox"
    assert thumb.headers["content-disposition"].startswith('inline; filename="one.thumbnail.jpg"')
    result = await world.http.get(f"/v1/jobs/{world.done.id}/result", headers=a)
    assert result.headers["content-type"] == "application/json"
    assert result.headers["x-content-type-options"] == "nosniff"
    assert result.headers["content-disposition"].startswith(
        'attachment; filename="one.result.json"'
    )


async def test_a_trailing_slash_is_no_route_and_never_a_redirect(world: World) -> None:
    a = world.auth(world.key_a)
    for method, path in (
        ("POST", "/v1/sessions/"),
        ("GET", "/v1/sessions/"),
        ("GET", f"/v1/sessions/{world.session_id}/jobs/"),
        ("GET", "/v1/jobs/"),
        ("GET", f"/v1/jobs/{world.done.id}/"),
        ("POST", "/v1/stream-tokens/"),
        ("POST", f"/v1/jobs/{world.waiting.id}/cancel/"),
    ):
        response = await world.http.request(method, path, headers=a | {"Host": "evil:1"})
        assert response.status_code in (404, 405), (method, path)
        assert "location" not in response.headers
        assert response.json()["error"]["code"] in ("not_found", "method_not_allowed")


async def _limited_key(world: World, **limits: float) -> tuple[str, Caller]:
    """A key of a new tenant of these limits (rates slow enough that nothing refills within a
    test unless it says otherwise)."""
    store: Store = world.app.state.deps.store
    slow = {f"{who}{kind}_rate": 0.001 for who in ("", "tenant_") for kind in CLASSES}
    tenant = await store.create_tenant(f"limited-{uuid.uuid4().hex[:6]}")
    await store.set_tenant_limits(tenant.id, slow | limits)
    key = (await store.create_api_key(tenant.id)).key
    caller = await store.caller_for_api_key(key)
    assert caller is not None
    return key, caller


CLASSES = ("read", "write", "stream")


async def test_a_key_over_its_read_limit_gets_429_with_retry_after_and_the_ratelimit_fields(
    world: World,
) -> None:
    key, _ = await _limited_key(world, read_burst=3)
    answers = [await world.http.get("/v1/sessions", headers=world.auth(key)) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[0].headers["ratelimit-policy"].startswith('"read-key";q=3;w=')
    assert answers[0].headers["ratelimit"].startswith('"read-key";r=2;')
    assert '"read-tenant";q=' in answers[0].headers["ratelimit-policy"]
    refused = answers[3]
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["ratelimit"].startswith('"read-key";r=0;')
    assert refused.json()["error"] == {
        "code": "rate_limited",
        "message": "too many read requests for this API key; "
        f"retry in {refused.headers['retry-after']} s",
    }
    assert refused.headers["x-request-id"]
    # Another tenant is not affected.
    other = await world.http.get("/v1/jobs", headers=world.auth(world.key_b))
    assert other.status_code == 200


async def test_a_conditional_poll_costs_a_fifth_unless_answered_in_full(world: World) -> None:
    key, caller = await _limited_key(world, read_burst=60)
    store: Store = world.app.state.deps.store
    session = await store.create_session(caller.tenant.id, "polled")
    bucket = caller_buckets(caller, "read", Limits())[0].key
    path = f"/v1/sessions/{session.id}/jobs"

    async def left() -> float:
        return float(await world.redis.hget(bucket, "t") or 0)

    first = await world.http.get(path, headers=world.auth(key))
    assert first.status_code == 200
    assert await left() == pytest.approx(59, abs=0.05)
    unchanged = await world.http.get(
        path, headers=world.auth(key) | {"If-None-Match": first.headers["etag"]}
    )
    assert unchanged.status_code == 304
    assert await left() == pytest.approx(58.8, abs=0.05)
    stale = await world.http.get(path, headers=world.auth(key) | {"If-None-Match": '"old"'})
    assert stale.status_code == 200
    assert await left() == pytest.approx(57.8, abs=0.05)  # 0.2 first, the other 0.8 after
    await world.http.get("/v1/jobs?limit=200", headers=world.auth(key))
    assert await left() == pytest.approx(7.8, abs=0.05)  # a page of 200 costs 50


async def test_writes_and_stream_opens_have_buckets_of_their_own(world: World) -> None:
    key, _ = await _limited_key(world, write_burst=1, stream_burst=1, tenant_stream_burst=2)
    auth = world.auth(key)
    missing = f"/v1/jobs/{uuid.uuid4()}"
    assert (await world.http.delete(missing, headers=auth)).status_code == 404
    refused = await world.http.delete(missing, headers=auth)
    assert refused.status_code == 429
    assert refused.json()["error"]["message"].startswith("too many write requests for this API")
    assert (await world.http.get("/v1/sessions", headers=auth)).status_code == 200
    store: Store = world.app.state.deps.store
    tenant = (await store.caller_for_api_key(key)).tenant  # type: ignore[union-attr]
    session = await store.create_session(tenant.id, "streamed")
    body = {"session_id": str(session.id)}
    minted = await world.http.post("/v1/stream-tokens", json=body, headers=auth)
    assert minted.status_code == 201
    again = await world.http.post("/v1/stream-tokens", json=body, headers=auth)
    assert again.status_code == 429
    assert again.json()["error"]["message"].startswith("too many stream requests")
    # A stream token opens on its tenant's bucket (no key comes with it): once the tenant
    # has spent it (the mint took one, another open takes the other), a 429 before any stream.
    url = f"/v1/sessions/{session.id}/events?access_token={minted.json()['token']}"
    limiter = world.app.state.deps.limiter
    await limiter.take(tenant_buckets(tenant, "stream", limiter.limits), 1)
    opened = await world.http.get(url)
    assert opened.status_code == 429
    assert opened.json()["error"]["message"].startswith("too many stream requests for this tenant")


async def test_unknown_keys_are_401_and_a_flood_of_them_is_limited_per_address(
    world: World,
) -> None:
    """Each made-up key is a 401 (one lookup each) until its address has spent a key's read
    burst; then 429s before any lookup. Probes and metrics are never limited; a key already
    looked up works on from that address, a key not yet looked up waits with its address."""
    address = {"X-Forwarded-For": "203.0.113.77"}  # as the edge sets it
    burst = 20
    # The defaults' burst of 200 at 50/s would refill as fast as this test sends.
    world.app.state.limiter = RateLimiter(world.redis, Limits(read_burst=burst, read_rate=0.001))
    known = address | world.auth(world.key_a)
    assert (await world.http.get("/v1/sessions", headers=known)).status_code == 200
    statuses: Counter[int] = Counter()
    for n in range(burst + 5):
        made_up = address | {"Authorization": f"Bearer tly_{n}"}
        statuses[(await world.http.get("/v1/sessions", headers=made_up)).status_code] += 1
    assert statuses == {401: burst - 1, 429: 6}  # the known key's lookup paid one
    refused = await world.http.get("/v1/sessions", headers=address)  # no key at all
    assert refused.status_code == 429
    assert refused.json()["error"]["message"].startswith(
        "too many read requests for this client address"
    )
    assert (await world.http.get("/healthz", headers=address)).status_code == 200
    assert (await world.http.get("/metrics", headers=address)).status_code == 200
    assert (await world.http.get("/v1/sessions", headers=known)).status_code == 200
    unseen = address | world.auth(world.key_b)
    assert (await world.http.get("/v1/sessions", headers=unseen)).status_code == 429
    elsewhere = {"X-Forwarded-For": "203.0.113.78"} | world.auth(world.key_b)
    assert (await world.http.get("/v1/sessions", headers=elsewhere)).status_code == 200
