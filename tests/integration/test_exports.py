"""Session exports (`GET /v1/sessions/{sid}/export?format=csv|json|coco`) and a job's result as
COCO, through the real gateway app on real PostgreSQL, Redis and moto S3; the sessions are
written as the upload and the orchestrator write them. And what an export holds in memory,
measured with tracemalloc, for a 500-job and a 5,000-job session."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pycocotools.coco import COCO
from redis.asyncio import Redis
from tests.gateway_app import REDIS_URL, gateway_settings, serving

from tally_bench.export import detections_of, failed, measure, report, run_export, seed_session
from tally_bus import Topology
from tally_db import Job, Store
from tally_gateway._records import get_job, session_jobs
from tally_gateway.routes.exports import PAGE
from tally_orchestrator._records import Records
from tally_stack.local_s3 import MOTO_ACCESS_KEY, MOTO_SECRET_KEY
from tally_storage import ObjectStore, S3Settings, keys
from tally_upload._records import NewJob, add_jobs

pytestmark = pytest.mark.integration

# The session's photos and what was found in each (None: the job failed).
FOUND: dict[str, list[dict[str, Any]] | None] = {
    "=tray 1.jpg": [  # a name a spreadsheet would run as a formula
        {"bbox": [10.0, 20.0, 50.0, 80.0], "score": 0.9, "label": "seedling"},
        {"bbox": [100.5, 200.0, 130.0, 260.5], "score": 0.75, "label": "weed"},
    ],
    "tray, 2.jpg": [{"bbox": [0.0, 0.0, 5.0, 5.0], "score": 0.6, "label": "seedling"}],
    "tray 3.jpg": [],
    "tray 4.jpg": None,
}


@dataclass
class World:
    http: httpx.AsyncClient
    app: FastAPI
    store: Store
    objects: ObjectStore
    tenant_id: uuid.UUID
    key: str
    read_key: str
    other_key: str
    session_id: uuid.UUID
    jobs: list[Job]

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}

    async def export(self, fmt: str | None, key: str | None = None) -> httpx.Response:
        params = {} if fmt is None else {"format": fmt}
        return await self.http.get(
            f"/v1/sessions/{self.session_id}/export", params=params, headers=self.auth(key)
        )


@pytest.fixture
async def world(database: str, s3_endpoint: str, amqp_url: str) -> AsyncIterator[World]:
    s3 = S3Settings(
        bucket=f"export-{uuid.uuid4().hex[:10]}",
        endpoint_url=s3_endpoint,
        access_key_id=MOTO_ACCESS_KEY,
        secret_access_key=MOTO_SECRET_KEY,
    )
    redis = Redis.from_url(REDIS_URL)
    await redis.flushdb()
    async with Store.open(database) as store, ObjectStore.open(s3, create_bucket=True) as objects:
        a, b = await store.create_tenant("a"), await store.create_tenant("b")
        key = (await store.create_api_key(a.id)).key
        read_key = (await store.create_api_key(a.id, "read")).key
        other_key = (await store.create_api_key(b.id)).key
        session = await store.create_session(a.id, "tray 7")
        jobs = await add_jobs(
            store,
            [
                NewJob(a.id, session.id, name, f"{a.id}/{session.id}/{n}/original.jpg", 400, 300)
                for n, name in enumerate(FOUND)
            ],
            [],
        )
        records = Records(store, Topology())
        for job, found in zip(jobs, FOUND.values(), strict=True):
            await records.plan_job(a.id, job.id, 4, 1, [])
            if found is None:
                await records.fail_job(a.id, job.id, "unreadable", "cannot decode", [])
                continue
            counts: dict[str, int] = {}
            for detection in found:
                counts[detection["label"]] = counts.get(detection["label"], 0) + 1
            document = {
                "job_id": str(job.id),
                "width": 400,
                "height": 300,
                "counts": counts,
                "detections": found,
            }
            result_key = keys.result(job.object_key)
            await objects.put_bytes(result_key, json.dumps(document).encode(), "application/json")
            await records.complete_job(a.id, job.id, counts, len(found), result_key, [], [])
        settings = gateway_settings(database, s3_endpoint, amqp_url, s3.bucket)
        async with serving(settings) as (app, http):
            yield World(
                http,
                app,
                store,
                objects,
                a.id,
                key,
                read_key,
                other_key,
                session.id,
                [await _reload(store, j) for j in jobs],
            )
    await redis.flushdb()
    await redis.aclose()


async def _reload(store: Store, job: Job) -> Job:
    found = await get_job(store, job.tenant_id, job.id)
    assert found is not None
    return found


async def test_the_csv_has_a_row_per_job_with_its_results_counts(world: World) -> None:
    response = await world.export("csv")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"].startswith(
        f'attachment; filename="tally-session-{world.session_id}.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["filename"] for r in rows] == [
        "'=tray 1.jpg",
        "tray, 2.jpg",
        "tray 3.jpg",
        "tray 4.jpg",
    ]
    assert [r["job_id"] for r in rows] == [str(j.id) for j in world.jobs]
    assert [(r["count_seedling"], r["count_weed"], r["detections"]) for r in rows] == [
        ("1", "1", "2"),
        ("1", "0", "1"),
        ("0", "0", "0"),
        ("", "", ""),
    ]
    assert [r["status"] for r in rows] == ["completed"] * 3 + ["failed"]
    assert (rows[3]["error_code"], rows[3]["error_message"]) == ("unreadable", "cannot decode")
    first = world.jobs[0]
    assert first.completed_at is not None
    assert rows[0]["completed_at"] == first.completed_at.isoformat()
    elapsed = (first.completed_at - first.created_at).total_seconds()
    assert float(rows[0]["seconds_to_completion"]) == pytest.approx(elapsed, abs=0.001)


async def test_json_lines_are_each_job_with_its_result_by_default(world: World) -> None:
    response = await world.export(None)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [line["filename"] for line in lines] == list(FOUND)
    for line, found in zip(lines, FOUND.values(), strict=True):
        if found is None:
            assert (line["status"], line["result"], line["error_code"]) == (
                "failed",
                None,
                "unreadable",
            )
            continue
        assert line["status"] == "completed"
        assert line["result"]["detections"] == found
        assert (line["result"]["width"], line["result"]["height"]) == (400, 300)
        assert sum(line["result"]["counts"].values()) == len(found)


async def test_the_coco_export_loads_in_pycocotools_with_the_detections(
    world: World, tmp_path: Path
) -> None:
    response = await world.export("coco")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    path = tmp_path / "export.json"
    path.write_bytes(response.content)
    coco = COCO(str(path))
    # The completed jobs, 1, 2, … in upload order; the failed one has no image.
    images = coco.loadImgs(coco.getImgIds())
    assert [(i["id"], i["file_name"]) for i in images] == [
        (1, "=tray 1.jpg"),
        (2, "tray, 2.jpg"),
        (3, "tray 3.jpg"),
    ]
    assert {(i["width"], i["height"]) for i in images} == {(400, 300)}
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    assert sorted(names.values()) == ["seedling", "weed"]
    for image, found in zip(images, FOUND.values(), strict=False):
        assert found is not None
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
        shown = [
            {
                "bbox": [
                    a["bbox"][0],
                    a["bbox"][1],
                    a["bbox"][0] + a["bbox"][2],
                    a["bbox"][1] + a["bbox"][3],
                ],
                "score": a["score"],
                "label": names[a["category_id"]],
            }
            for a in annotations
        ]
        assert shown == found
        for annotation, detection in zip(annotations, found, strict=True):
            x1, y1, x2, y2 = detection["bbox"]
            assert annotation["bbox"] == [x1, y1, x2 - x1, y2 - y1]
            assert annotation["area"] == pytest.approx((x2 - x1) * (y2 - y1))
            assert annotation["iscrowd"] == 0
    assert len(coco.getAnnIds()) == 3


def _corners(box: list[float]) -> list[float]:
    x, y, w, h = box
    return [x, y, x + w, y + h]


async def test_another_tenants_session_is_404_like_one_that_does_not_exist(world: World) -> None:
    for session_id in (world.session_id, uuid.uuid4()):
        for fmt in ("csv", "json", "coco"):
            response = await world.http.get(
                f"/v1/sessions/{session_id}/export",
                params={"format": fmt},
                headers=world.auth(world.other_key),
            )
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "not_found"
    response = await world.http.get(f"/v1/sessions/{world.session_id}/export")
    assert response.status_code == 401


async def test_a_format_it_does_not_know_is_a_422_in_the_envelope(world: World) -> None:
    for fmt in ("xml", "", "CSV"):
        response = await world.export(fmt)
        assert response.status_code == 422, fmt
        assert response.json()["error"]["code"] == "invalid_request"
        result = await world.http.get(
            f"/v1/jobs/{world.jobs[0].id}/result", params={"format": fmt}, headers=world.auth()
        )
        assert result.status_code == 422, fmt
        assert result.json()["error"]["code"] == "invalid_request"


async def test_a_read_only_key_may_export(world: World) -> None:
    response = await world.export("csv", key=world.read_key)
    assert response.status_code == 200
    assert len(response.text.splitlines()) == 1 + len(FOUND)


async def test_a_jobs_result_as_coco_is_one_image_and_the_default_is_unchanged(
    world: World, tmp_path: Path
) -> None:
    job = world.jobs[0]
    default = await world.http.get(f"/v1/jobs/{job.id}/result", headers=world.auth())
    assert default.json() == {
        "job_id": str(job.id),
        "width": 400,
        "height": 300,
        "counts": {"seedling": 1, "weed": 1},
        "detections": FOUND[job.filename],
        "model": None,  # a result document from before the model registry, as written here
    }
    same = await world.http.get(
        f"/v1/jobs/{job.id}/result", params={"format": "json"}, headers=world.auth()
    )
    assert same.content == default.content
    response = await world.http.get(
        f"/v1/jobs/{job.id}/result", params={"format": "coco"}, headers=world.auth()
    )
    assert response.status_code == 200
    assert response.headers["content-disposition"].startswith(
        'attachment; filename="=tray 1.coco.json"'
    )
    path = tmp_path / "job.json"
    path.write_bytes(response.content)
    coco = COCO(str(path))
    assert coco.getImgIds() == [1]
    boxes = [a["bbox"] for a in coco.loadAnns(coco.getAnnIds(imgIds=[1]))]
    assert boxes == [[10.0, 20.0, 40.0, 60.0], [100.5, 200.0, 29.5, 60.5]]
    failed_job = await world.http.get(
        f"/v1/jobs/{world.jobs[3].id}/result", params={"format": "coco"}, headers=world.auth()
    )
    assert failed_job.status_code == 409


async def test_an_export_costs_reads_by_the_sessions_size(world: World) -> None:
    """One read per 20 jobs: a key whose bucket holds 30 reads exports a 400-job session (20)
    once, and the second export at once is a 429."""
    await world.store.set_tenant_limits(world.tenant_id, {"read_burst": 30, "read_rate": 0.01})
    big = await seed_session(world.store, world.objects, world.tenant_id, 400)
    key = (await world.store.create_api_key(world.tenant_id, "read")).key
    url = f"/v1/sessions/{big}/export"
    first = await world.http.get(url, params={"format": "csv"}, headers=world.auth(key))
    assert first.status_code == 200
    second = await world.http.get(url, params={"format": "csv"}, headers=world.auth(key))
    assert second.status_code == 429
    assert second.json()["error"]["code"] == "rate_limited"
    assert int(second.headers["retry-after"]) >= 1


async def test_an_export_broken_off_mid_stream_ends_after_a_whole_line(world: World) -> None:
    """A result document the gateway cannot read in the second page: the first page is out
    with its headers, so no error status can come; the body stops after its last whole line."""
    session_id = await seed_session(world.store, world.objects, world.tenant_id, PAGE + 10)
    page = await _records_page(world, session_id)
    broken = page[PAGE + 2]
    await world.objects.put_bytes(keys.result(broken.object_key), b"{not json", "text/plain")
    pieces: list[bytes] = []
    with pytest.raises(Exception, match="validation error"):
        await run_export(world.app, session_id, "json", world.key, sink=pieces.append)
    body = b"".join(pieces)
    assert body.endswith(b"\n")
    lines = [json.loads(line) for line in body.splitlines()]
    assert len(lines) == PAGE  # the first page, whole; nothing of the second
    assert [line["filename"] for line in lines] == [f"{n:05}.jpg" for n in range(PAGE)]


async def _records_page(world: World, session_id: uuid.UUID) -> list[Job]:
    return await session_jobs(world.store, world.tenant_id, session_id)


def test_an_exports_memory_stays_bounded_as_the_session_grows(
    database: str, s3_endpoint: str, tmp_path: Path
) -> None:
    """The peak of Python memory while a 5,000-job session is exported stays within twice the
    peak of a 500-job one (a page of jobs at a time, whatever the session's size), for the CSV
    (PostgreSQL alone) and COCO (a result document per job, one pass); and the 5,000-job
    exports are whole. (JSON Lines reads the results as COCO does: make bench-export measures
    all three.) Synchronous, on a loop of its own: the debug mode of the async tests' loop
    would add its own allocations to every callback, and minutes to the run."""
    figures = asyncio.run(
        measure(
            database,
            s3_endpoint,
            sizes=(500, 5000),
            formats=("csv", "coco"),
            timed=False,
            bodies=tmp_path,
        )
    )
    print("\n" + report(figures))
    for figure in figures:
        assert figure.traced.status == 200
        _check_whole(figure.fmt, figure.jobs, tmp_path / f"{figure.fmt}-{figure.jobs}")
    peaks = {(f.fmt, f.jobs): f.traced.peak_bytes or 0 for f in figures}
    for fmt in ("csv", "coco"):
        small, big = peaks[fmt, 500], peaks[fmt, 5000]
        assert 0 < big < 2 * small, f"{fmt}: a peak of {big} bytes at 5,000 jobs, {small} at 500"


def _check_whole(fmt: str, jobs: int, path: Path) -> None:
    completed = [n for n in range(jobs) if not failed(n)]
    if fmt == "csv":
        with path.open(newline="") as text:
            rows = list(csv.DictReader(text))
        assert len(rows) == jobs
        assert sum(int(r["detections"] or 0) for r in rows) == sum(
            len(detections_of(n)) for n in completed
        )
    elif fmt == "json":
        with path.open() as text:
            assert sum(1 for _ in text) == jobs
    else:
        document = json.loads(path.read_bytes())
        assert len(document["images"]) == len(completed)
        assert len(document["annotations"]) == sum(len(detections_of(n)) for n in completed)
