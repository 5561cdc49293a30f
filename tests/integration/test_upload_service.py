"""The upload service on real PostgreSQL, moto S3 and RabbitMQ, through its HTTP API."""

from __future__ import annotations

import io
import struct
import uuid
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aio_pika
import httpx
import pytest
from asgi_lifespan import LifespanManager
from PIL import Image
from pydantic import SecretStr
from tests.openapi_conformance import Conformance

from tally_bus import Topology, decode
from tally_contracts.v1 import JobEvent, PhotoUploaded
from tally_db import Store
from tally_stack import free_port
from tally_stack.local_s3 import MOTO_ACCESS_KEY, MOTO_SECRET_KEY
from tally_storage import ObjectStore, S3Settings, keys
from tally_upload.app import create_app
from tally_upload.config import Settings

pytestmark = pytest.mark.integration


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


@dataclass
class Service:
    http: httpx.AsyncClient
    settings: Settings
    topology: Topology
    key_a: str
    key_b: str
    amqp_url: str
    objects: ObjectStore  # the service's bucket, opened by the test

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
        relay_interval_s=0.2,
    )
    async with Store.open(database) as store:
        key_a = (await store.create_api_key((await store.create_tenant("a")).id)).key
        key_b = (await store.create_api_key((await store.create_tenant("b")).id)).key
    app = create_app(settings)
    s3 = S3Settings(
        bucket=settings.s3_bucket,
        endpoint_url=s3_endpoint,
        access_key_id=MOTO_ACCESS_KEY,
        secret_access_key=MOTO_SECRET_KEY,
    )
    async with (
        LifespanManager(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://upload",
            # Every answer of every test is checked against its route's declared schema.
            event_hooks={"response": [Conformance(app).check]},
        ) as http,
        ObjectStore.open(s3) as objects,
    ):
        yield Service(http, settings, topology, key_a, key_b, amqp_url, objects)
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
    assert created.json()["params"] == {"slice_size": 640, "overlap": 0.25, "confidence": 0.5}
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
            LifespanManager(app),
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
