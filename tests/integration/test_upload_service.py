"""The upload service on real PostgreSQL, moto S3 and RabbitMQ, through its HTTP API."""

from __future__ import annotations

import asyncio
import io
import struct
import uuid
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aio_pika
import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from PIL import Image
from pydantic import SecretStr
from tests.eventually import eventually_async
from tests.gateway_app import started
from tests.openapi_conformance import Conformance

from tally_bus import Topology, decode
from tally_contracts.v1 import JobEvent, PhotoUploaded
from tally_db import Store
from tally_stack import free_port
from tally_stack.local_s3 import MOTO_ACCESS_KEY, MOTO_SECRET_KEY
from tally_storage import ObjectStore, S3Settings, keys
from tally_upload.app import create_app
from tally_upload.config import Settings
from tally_upload.deps import Deps

pytestmark = pytest.mark.integration
BOUNDARY = "tally-test-boundary"


def _jpeg(width: int = 800, height: int = 600) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((width, height), 40).convert("RGB").save(buffer, format="JPEG")
    return buffer.getvalue()


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x.txt", "not a photo")
    return buffer.getvalue()


def _bmp_header(width: int, height: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + info


def _multipart(*parts: tuple[bytes, bytes | None, bytes]) -> tuple[bytes, dict[str, str]]:
    """A multipart body made by hand, (name, filename, data) a part, and its Content-Type: httpx
    would escape what these tests must send as it is (a NUL in a filename)."""
    body: list[bytes] = []
    for name, filename, data in parts:
        disposition = b'form-data; name="' + name + b'"'
        if filename is not None:
            disposition += b'; filename="' + filename + b'"'
        body += [f"--{BOUNDARY}\r\n".encode(), b"Content-Disposition: ", disposition]
        body += [b"\r\nContent-Type: image/jpeg\r\n\r\n", data, b"\r\n"]
    body.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(body), {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


@dataclass
class Service:
    app: FastAPI
    http: httpx.AsyncClient
    settings: Settings
    topology: Topology
    key_a: str
    key_b: str
    amqp_url: str
    objects: ObjectStore  # the service's bucket, opened by the test
    database: str
    tenant_a: uuid.UUID

    def auth(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    async def session(self, key: str) -> str:
        response = await self.http.post("/v1/sessions", json={}, headers=self.auth(key))
        assert response.status_code == 201, response.text
        return str(response.json()["session_id"])

    async def upload(self, key: str, sid: str, files: list[tuple[str, bytes]]) -> httpx.Response:
        parts = [("file", (name, data, "image/jpeg")) for name, data in files]
        return await self.http.post(
            f"/v1/sessions/{sid}/photos", files=parts, headers=self.auth(key)
        )

    async def limit(self, **limits: float) -> None:
        """Tenant A's own limits (read by the service at each request)."""
        async with Store.open(self.database) as store:
            await store.set_tenant_limits(self.tenant_a, limits)

    async def stored_keys(self) -> list[str]:
        """Every object in the service's bucket (the test's own client's listing)."""
        listing = await self.objects._client.list_objects_v2(Bucket=self.objects.bucket)
        return sorted(o["Key"] for o in listing.get("Contents", []))

    async def usage(self) -> list[tuple[int, int, int]]:
        """Tenant A's usage rows: (photos, slices, bytes) per day."""
        async with Store.open(self.database) as store:
            rows = await store.pool.fetch(
                "SELECT photos, slices, bytes FROM usage_daily WHERE tenant_id = $1 ORDER BY day",
                self.tenant_a,
            )
        return [(r["photos"], r["slices"], r["bytes"]) for r in rows]

    async def messages(self, queue: str, count: int) -> list[aio_pika.abc.AbstractIncomingMessage]:
        connection = await aio_pika.connect(self.amqp_url)
        async with connection:
            channel = await connection.channel()
            q = await channel.get_queue(queue, ensure=False)
            got = []
            async with q.iterator(timeout=15) as messages:
                async for message in messages:
                    await message.ack()
                    got.append(message)
                    if len(got) == count:
                        break
            return got


@pytest.fixture
async def service(database: str, s3_endpoint: str, amqp_url: str) -> AsyncIterator[Service]:
    topology = Topology(prefix=f"test-{uuid.uuid4().hex[:10]}")
    settings = Settings(
        database_url=SecretStr(database),
        amqp_url=SecretStr(amqp_url),
        bus_prefix=topology.prefix,
        redis_url=SecretStr("redis://127.0.0.1:6379/15"),  # the rate limits' buckets
        s3_endpoint_url=s3_endpoint,
        s3_bucket=f"up-{uuid.uuid4().hex[:10]}",
        s3_access_key_id=MOTO_ACCESS_KEY,
        s3_secret_access_key=SecretStr(MOTO_SECRET_KEY),
        max_file_bytes=2_000_000,
        max_files_per_request=6,
        max_request_bytes=8_000_000,
        decode_wait_s=0.2,  # only the test that holds the whole budget ever waits
        relay_interval_s=0.2,
    )
    async with Store.open(database) as store:
        tenant_a = (await store.create_tenant("a")).id
        key_a = (await store.create_api_key(tenant_a)).key
        key_b = (await store.create_api_key((await store.create_tenant("b")).id)).key
    app = create_app(settings)
    s3 = S3Settings(
        bucket=settings.s3_bucket,
        endpoint_url=s3_endpoint,
        access_key_id=MOTO_ACCESS_KEY,
        secret_access_key=MOTO_SECRET_KEY,
    )
    async with (
        started(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://upload",
            # Every answer of every test is checked against its route's declared schema.
            event_hooks={"response": [Conformance(app).check]},
        ) as http,
        ObjectStore.open(s3) as objects,
    ):
        yield Service(
            app, http, settings, topology, key_a, key_b, amqp_url, objects, database, tenant_a
        )
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        await topology.delete(await connection.channel())


async def test_good_photos_are_queued_and_bad_ones_rejected_in_the_same_request(
    service: Service,
) -> None:
    sid = await service.session(service.key_a)
    response = await service.upload(
        service.key_a,
        sid,
        [
            ("tray-1.jpg", _jpeg()),
            ("broken.jpg", _jpeg()[:400]),
            ("archive.jpg", _zip()),
            ("empty.jpg", b""),
            ("tray-2.jpg", _jpeg(640, 480)),
        ],
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert [j["filename"] for j in body["jobs"]] == ["tray-1.jpg", "tray-2.jpg"]
    assert all(j["status"] == "queued" for j in body["jobs"])
    assert {r["filename"]: r["code"] for r in body["rejected"]} == {
        "broken.jpg": "corrupt_image",
        "archive.jpg": "unsupported_format",
        "empty.jpg": "empty_file",
    }

    uploaded = [
        decode(m, PhotoUploaded)
        for m in await service.messages(service.topology.photos_queue.name, 2)
    ]
    assert sorted(u.filename for u in uploaded) == ["tray-1.jpg", "tray-2.jpg"]
    assert {(u.width, u.height) for u in uploaded} == {(800, 600), (640, 480)}
    assert all(u.params.slice_size == 512 for u in uploaded)
    events = [
        decode(m, JobEvent) for m in await service.messages(service.topology.events_queue.name, 2)
    ]
    assert {e.WhichOneof("kind") for e in events} == {"queued"}
    assert {e.sequence for e in events} == {1}
    assert {e.job.job_id for e in events} == {j["job_id"] for j in body["jobs"]}

    for photo in uploaded:
        assert await service.objects.exists(photo.object_key)
        thumbnail = keys.thumbnail(photo.object_key)
        with Image.open(io.BytesIO(await service.objects.get_bytes(thumbnail))) as image:
            assert max(image.size) == 320


@pytest.mark.parametrize(
    ("files", "status", "code"),
    [
        ([("a.jpg", b""), ("b.jpg", _jpeg()[:300])], 422, "photos_rejected"),
        ([("a.jpg", _zip())], 415, "unsupported_format"),
        ([("huge.bmp", _bmp_header(20_000, 20_000))], 422, "image_too_large"),
        ([("big.jpg", _jpeg(3000, 2500))], 413, "file_too_large"),
    ],
    ids=["unreadable", "not-an-image", "over-the-pixel-limit", "over-the-byte-limit"],
)
async def test_a_request_of_only_bad_files_gets_the_contracts_4xx(
    service: Service, files: list[tuple[str, bytes]], status: int, code: str
) -> None:
    sid = await service.session(service.key_a)
    response = await service.upload(service.key_a, sid, files)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code
    assert body["jobs"] == []
    assert [r["filename"] for r in body["rejected"]] == [name for name, _ in files]


async def test_another_tenants_session_is_not_found(service: Service) -> None:
    sid = await service.session(service.key_a)
    response = await service.upload(service.key_b, sid, [("a.jpg", _jpeg())])
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_requests_without_a_valid_key_are_refused(service: Service) -> None:
    assert (await service.http.post("/v1/sessions", json={})).status_code == 401
    refused = await service.http.post("/v1/sessions", json={}, headers=service.auth("tly_nope"))
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthenticated"


async def test_session_parameters_are_validated(service: Service) -> None:
    response = await service.http.post(
        "/v1/sessions",
        json={"name": "tray 7", "params": {"slice_size": 500}},
        headers=service.auth(service.key_a),
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"
    created = await service.http.post(
        "/v1/sessions",
        json={"name": "tray 7", "params": {"slice_size": 640, "confidence": 0.5}},
        headers=service.auth(service.key_a),
    )
    assert created.status_code == 201
    assert created.json()["params"] == {
        "slice_size": 640,
        "overlap": 0.25,
        "confidence": 0.5,
        "model": "seedlings:1",  # the default, named by its version
    }
    for name in ("tray\u00007", "tray\n7", "\x1b[31mtray"):  # NUL was a 500 from the database
        refused = await service.http.post(
            "/v1/sessions", json={"name": name}, headers=service.auth(service.key_a)
        )
        assert refused.status_code == 422, name
        assert refused.json()["error"]["code"] == "invalid_request"
    kept = await service.http.post(
        "/v1/sessions", json={"name": "Serre 3 · été"}, headers=service.auth(service.key_a)
    )
    assert (kept.status_code, kept.json()["name"]) == (201, "Serre 3 · été")


async def test_the_202_tells_the_slices_each_photo_plans_and_counts_them_in_todays_usage(
    service: Service,
) -> None:
    sid = await service.session(service.key_a)
    first, second = _jpeg(800, 600), _jpeg(1500, 1000)
    response = await service.upload(service.key_a, sid, [("a.jpg", first), ("b.jpg", second)])
    assert response.status_code == 202, response.text
    body = response.json()
    # SAHI at slice_size 512, overlap 0.25: 2x2 windows for 800x600, 4x3 for 1500x1000.
    assert [j["planned_slices"] for j in body["jobs"]] == [4, 12]
    assert body["planned_slices"] == 16
    async with Store.open(service.database) as store:
        stored = await store.pool.fetch(
            "SELECT planned_slices FROM jobs WHERE session_id = $1 ORDER BY filename",
            uuid.UUID(sid),
        )
    assert [r["planned_slices"] for r in stored] == [4, 12]
    assert await service.usage() == [(2, 16, len(first) + len(second))]
    (uploaded,) = [
        decode(m, PhotoUploaded)
        for m in await service.messages(service.topology.photos_queue.name, 2)
        if decode(m, PhotoUploaded).filename == "b.jpg"
    ]
    assert (uploaded.width, uploaded.height) == (1500, 1000)


async def test_a_photo_planning_too_many_slices_is_refused_naming_the_limit(
    service: Service,
) -> None:
    await service.limit(max_slices_per_photo=8)
    sid = await service.session(service.key_a)
    mixed = await service.upload(
        service.key_a, sid, [("big.jpg", _jpeg(1500, 1000)), ("ok.jpg", _jpeg(800, 600))]
    )
    assert mixed.status_code == 202, mixed.text
    assert [j["filename"] for j in mixed.json()["jobs"]] == ["ok.jpg"]
    (refused,) = mixed.json()["rejected"]
    assert (refused["filename"], refused["code"]) == ("big.jpg", "too_many_slices")
    assert "12 slices" in refused["message"]
    assert "max_slices_per_photo" in refused["message"]

    alone = await service.upload(service.key_a, sid, [("big.jpg", _jpeg(1500, 1000))])
    assert alone.status_code == 422
    assert alone.json()["error"]["code"] == "too_many_slices"
    assert alone.json()["jobs"] == []


async def test_the_photos_past_the_requests_pixel_limit_are_refused(service: Service) -> None:
    await service.limit(max_pixels_per_request=1_000_000)  # two 800x600 photos fit
    sid = await service.session(service.key_a)
    response = await service.upload(
        service.key_a, sid, [(f"{n}.jpg", _jpeg(800, 600)) for n in range(3)]
    )
    assert response.status_code == 202, response.text
    assert [j["filename"] for j in response.json()["jobs"]] == ["0.jpg", "1.jpg"]
    assert [(r["filename"], r["code"]) for r in response.json()["rejected"]] == [
        ("2.jpg", "request_pixel_limit")
    ]


async def test_an_upload_over_a_quota_is_a_429_and_stores_nothing(service: Service) -> None:
    await service.limit(queued_slices=6)
    sid = await service.session(service.key_a)
    assert (await service.upload(service.key_a, sid, [("a.jpg", _jpeg())])).status_code == 202
    before = (await service.stored_keys(), await service.usage())

    refused = await service.upload(service.key_a, sid, [("b.jpg", _jpeg())])
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "60"
    assert refused.json()["error"] == {
        "code": "quota_exceeded",
        "message": "the queued_slices quota is 6 slices queued at once; 4 are queued and this "
        "request plans 4",
    }
    assert (await service.stored_keys(), await service.usage()) == before
    # Another tenant's quota is its own.
    other = await service.session(service.key_b)
    assert (await service.upload(service.key_b, other, [("b.jpg", _jpeg())])).status_code == 202


async def test_the_daily_quota_asks_to_retry_after_utc_midnight(service: Service) -> None:
    await service.limit(daily_slices=5)
    sid = await service.session(service.key_a)
    assert (await service.upload(service.key_a, sid, [("a.jpg", _jpeg())])).status_code == 202
    refused = await service.upload(service.key_a, sid, [("b.jpg", _jpeg())])
    assert refused.status_code == 429
    assert "daily_slices quota is 5" in refused.json()["error"]["message"]
    now = datetime.now(UTC)
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    assert abs(int(refused.headers["Retry-After"]) - (midnight - now).total_seconds()) < 60


async def test_parallel_uploads_of_one_tenant_cannot_both_pass_a_nearly_full_quota(
    service: Service,
) -> None:
    """Each request passes the check made before its photos are stored; the check again under
    the tenant's lock, as the jobs are added, lets only as many in as the quota holds, and the
    objects of the others are deleted."""
    await service.limit(queued_photos=3)
    sid = await service.session(service.key_a)
    photo = _jpeg()
    answers = await asyncio.gather(
        *(service.upload(service.key_a, sid, [(f"{n}.jpg", photo)]) for n in range(8))
    )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [202] * 3 + [429] * 5, [a.text for a in answers]
    accepted = [a.json()["jobs"][0]["job_id"] for a in answers if a.status_code == 202]
    stored = await service.stored_keys()
    assert len(stored) == 2 * 3  # an original and a thumbnail of each accepted photo only
    assert {key.split("/")[2] for key in stored} == set(accepted)
    assert await service.usage() == [(3, 12, 3 * len(photo))]


async def test_a_confidence_the_bus_would_round_to_1_is_refused(service: Service) -> None:
    """0.99999999 was accepted, became 1.0 as a 32-bit float on the bus, and every chunk of its
    jobs failed in the detector, retried, and was dead-lettered."""
    auth = service.auth(service.key_a)
    for confidence in (0.99999999, 1e-50):
        refused = await service.http.post(
            "/v1/sessions", json={"params": {"confidence": confidence}}, headers=auth
        )
        assert refused.status_code == 422, confidence
        assert refused.json()["error"]["code"] == "invalid_request"
        assert "32-bit float" in refused.json()["error"]["message"]
    kept = await service.http.post(
        "/v1/sessions", json={"params": {"confidence": 0.9999999}}, headers=auth
    )
    assert kept.status_code == 201


async def test_health_readiness_and_metrics(service: Service) -> None:
    assert (await service.http.get("/healthz")).json() == {"status": "ok"}
    ready = await service.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"started": True, "database": True, "bus": True}
    assert "tally_upload_photos_total" in (await service.http.get("/metrics")).text


async def test_the_other_answers_match_their_declared_schemas_too(service: Service) -> None:
    """The answers no test above asks for, each checked by the client's conformance hook."""
    auth = service.auth(service.key_a)
    sid = await service.session(service.key_a)
    nothing = await service.http.post(f"/v1/sessions/{sid}/photos", headers=auth)
    assert (nothing.status_code, nothing.json()["error"]["code"]) == (400, "no_files")
    unknown = await service.upload(service.key_a, str(uuid.uuid4()), [("a.jpg", _jpeg())])
    assert unknown.status_code == 404
    invalid = await service.upload(service.key_a, "not-a-session", [("a.jpg", _jpeg())])
    assert (invalid.status_code, invalid.json()["error"]["code"]) == (422, "invalid_request")
    named = await service.http.post("/v1/sessions", json={"name": "tray 8"}, headers=auth)
    assert named.json()["name"] == "tray 8"
    assert (await service.http.post("/v1/sessions", headers=auth)).status_code == 201


async def test_a_file_over_the_byte_limit_is_refused_and_the_next_one_still_accepted(
    service: Service,
) -> None:
    sid = await service.session(service.key_a)
    files = [
        ("big.jpg", _jpeg(3000, 2500)),
        ("small.jpg", _jpeg()),
        ("big-2.jpg", b"x" * 3_000_000),
    ]
    response = await service.upload(service.key_a, sid, files)
    assert response.status_code == 202, response.text
    body = response.json()
    assert [j["filename"] for j in body["jobs"]] == ["small.jpg"]
    assert [(r["filename"], r["code"]) for r in body["rejected"]] == [
        ("big.jpg", "file_too_large"),
        ("big-2.jpg", "file_too_large"),
    ]


async def test_filenames_are_stored_and_answered_as_safe_basenames(service: Service) -> None:
    sid = await service.session(service.key_a)
    body, headers = _multipart(
        (b"file", "../../trays/\u202eTray\t 7\x1b.jpg".encode(), _jpeg()),
        (b"file", b"C:\\Users\\ana\\" + b"a" * 3000 + b".jpg", _jpeg()),
        (b"file", None, _jpeg()),
    )
    response = await service.http.post(
        f"/v1/sessions/{sid}/photos", content=body, headers=headers | service.auth(service.key_a)
    )
    assert response.status_code == 202, response.text
    names = [j["filename"] for j in response.json()["jobs"]]
    assert names == ["Tray 7.jpg", "a" * 251 + ".jpg", "unnamed"]
    uploaded = [
        decode(m, PhotoUploaded)
        for m in await service.messages(service.topology.photos_queue.name, 3)
    ]
    assert sorted(u.filename for u in uploaded) == sorted(names)


@pytest.mark.parametrize(
    ("parts", "code"),
    [
        ([(b"file", b"a.jpg", b"x"), (b"junk", None, b"j" * 1_000_000)], "unknown_field"),
        ([(b"file", f"{n}.jpg".encode(), b"x") for n in range(7)], "too_many_files"),
    ],
    ids=["unknown-field", "too-many-files"],
)
async def test_a_request_with_another_field_or_too_many_parts_is_a_400(
    service: Service, parts: list[tuple[bytes, bytes | None, bytes]], code: str
) -> None:
    sid = await service.session(service.key_a)
    body, headers = _multipart(*parts)
    response = await service.http.post(
        f"/v1/sessions/{sid}/photos", content=body, headers=headers | service.auth(service.key_a)
    )
    assert (response.status_code, response.json()["error"]["code"]) == (400, code)


async def test_a_body_that_is_no_photo_upload_is_a_4xx_in_the_envelope(service: Service) -> None:
    sid = await service.session(service.key_a)
    auth = service.auth(service.key_a)
    url = f"/v1/sessions/{sid}/photos"
    as_json = await service.http.post(url, json={"file": "a.jpg"}, headers=auth)
    assert (as_json.status_code, as_json.json()["error"]["code"]) == (415, "unsupported_media_type")
    cases = {
        b"--" + BOUNDARY.encode() + b"\r\nbroken header\r\n\r\nx": "malformed_multipart",
        _multipart((b"file", b"a.jpg", _jpeg()))[0][:-30]: "malformed_multipart",  # cut short
    }
    for body, code in cases.items():
        headers = auth | {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
        response = await service.http.post(url, content=body, headers=headers)
        assert (response.status_code, response.json()["error"]["code"]) == (400, code)
    no_boundary = await service.http.post(
        url, content=b"x", headers=auth | {"Content-Type": "multipart/form-data"}
    )
    assert (no_boundary.status_code, no_boundary.json()["error"]["code"]) == (
        400,
        "malformed_multipart",
    )


async def test_a_request_declared_over_the_limit_is_a_413_before_its_body_is_read(
    service: Service,
) -> None:
    sid = await service.session(service.key_a)
    body, headers = _multipart((b"file", b"a.jpg", _jpeg()))
    read: list[int] = []

    async def counted() -> AsyncIterator[bytes]:
        read.append(len(body))
        yield body

    response = await service.http.post(
        f"/v1/sessions/{sid}/photos",
        content=counted(),
        headers=headers | service.auth(service.key_a) | {"Content-Length": "8000001"},
    )
    assert (response.status_code, response.json()["error"]["code"]) == (413, "request_too_large")
    assert read == []


async def test_files_that_find_no_room_to_be_decoded_are_a_503_to_send_again(
    service: Service,
) -> None:
    sid = await service.session(service.key_a)
    deps: Deps = service.app.state.deps
    # Every pixel of the budget is taken (as by decodes of other requests) for the whole upload.
    async with deps.budget.hold(deps.budget.total, 1):
        busy = await service.upload(service.key_a, sid, [("a.jpg", _jpeg()), ("b.jpg", _jpeg())])
    assert busy.status_code == 503, busy.text
    assert busy.json()["error"]["code"] == "busy"
    assert [r["code"] for r in busy.json()["rejected"]] == ["busy", "busy"]
    assert int(busy.headers["Retry-After"]) >= 1
    again = await service.upload(service.key_a, sid, [("a.jpg", _jpeg())])
    assert again.status_code == 202


async def test_a_nul_in_a_filename_leaves_the_connection_good_for_the_next_tenant(
    service: Service,
) -> None:
    """Over a real socket: a NUL once reached PostgreSQL (a 500), and the next request on the
    same keep-alive connection, whoever sent it, got a 502 from the edge."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            service.app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"
        )
    )
    serving = asyncio.create_task(server.serve())
    try:
        await eventually_async(lambda: server.started, every_s=0.02)  # uvicorn has no event
        sid = await service.session(service.key_a)
        body, headers = _multipart((b"file", b"tray\x00.jpg", _jpeg()))
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            limits=httpx.Limits(max_connections=1),
            event_hooks={"response": [Conformance(service.app).check]},
        ) as http:
            nul = await http.post(
                f"/v1/sessions/{sid}/photos",
                content=body,
                headers=headers | service.auth(service.key_a),
            )
            assert nul.status_code == 202, nul.text
            assert nul.json()["jobs"][0]["filename"] == "tray.jpg"
            other = await http.post("/v1/sessions", json={}, headers=service.auth(service.key_b))
            assert other.status_code == 201, other.text

            def local_port(response: httpx.Response) -> int:
                stream = response.extensions["network_stream"]
                return int(stream.get_extra_info("client_addr")[1])

            assert local_port(nul) == local_port(other)  # the same connection, kept alive
    finally:
        server.should_exit = True
        await serving


async def test_a_trailing_slash_is_no_route_and_never_a_redirect(service: Service) -> None:
    auth = service.auth(service.key_a) | {"Host": "evil:1"}
    created = await service.http.post("/v1/sessions", json={}, headers=auth)
    session_id = created.json()["session_id"]
    for path in ("/v1/sessions/", f"/v1/sessions/{session_id}/photos/"):
        response = await service.http.post(path, json={}, headers=auth)
        assert response.status_code in (404, 405), path
        assert "location" not in response.headers
        assert response.json()["error"]["code"] in ("not_found", "method_not_allowed")


async def test_a_key_over_its_write_limit_gets_429_and_its_upload_is_not_taken(
    service: Service, database: str
) -> None:
    async with Store.open(database) as store:
        tenant = await store.create_tenant("limited")
        await store.set_tenant_limits(tenant.id, {"write_burst": 2, "write_rate": 0.001})
        key = (await store.create_api_key(tenant.id)).key
    sid = await service.session(key)
    taken = await service.upload(key, sid, [("one.jpg", _jpeg(64, 64))])
    assert taken.status_code == 202
    assert taken.headers["ratelimit"].startswith('"write-key";r=0;')
    refused = await service.upload(key, sid, [("two.jpg", _jpeg(64, 64))])
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["message"].startswith("too many write requests for this API")
    await service.session(service.key_a)  # other tenants write on (201)


async def test_with_redis_unreachable_the_service_is_ready_and_limits_hold_locally(
    database: str, s3_endpoint: str, amqp_url: str
) -> None:
    topology = Topology(prefix=f"test-{uuid.uuid4().hex[:10]}")
    settings = Settings(
        database_url=SecretStr(database),
        amqp_url=SecretStr(amqp_url),
        bus_prefix=topology.prefix,
        redis_url=SecretStr(f"redis://127.0.0.1:{free_port()}/0"),  # nobody listens
        s3_endpoint_url=s3_endpoint,
        s3_bucket=f"up-{uuid.uuid4().hex[:10]}",
        s3_access_key_id=MOTO_ACCESS_KEY,
        s3_secret_access_key=SecretStr(MOTO_SECRET_KEY),
    )
    async with Store.open(database) as store:
        tenant = await store.create_tenant("alone")
        await store.set_tenant_limits(tenant.id, {"write_burst": 1, "write_rate": 0.001})
        key = (await store.create_api_key(tenant.id)).key
    app = create_app(settings)
    try:
        async with (
            started(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://upload"
            ) as http,
        ):
            assert (await http.get("/readyz")).status_code == 200
            auth = {"Authorization": f"Bearer {key}"}
            first = await http.post("/v1/sessions", json={}, headers=auth)
            second = await http.post("/v1/sessions", json={}, headers=auth)
            assert (first.status_code, second.status_code) == (201, 429)
    finally:
        async with await aio_pika.connect(amqp_url) as connection:
            await topology.delete(await connection.channel())
