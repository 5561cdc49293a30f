"""The model registry's HTTP side on real servers (PostgreSQL, moto's S3, RabbitMQ): uploads
through the upload service, listing and deleting through the gateway, each refusal in the
envelope with nothing stored, and tenants kept apart."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aio_pika
import httpx
import onnx
import pytest
from onnx import helper
from pydantic import SecretStr
from tests.gateway_app import gateway_settings, serving, started
from tests.openapi_conformance import Conformance

from tally_bus import Topology
from tally_db import Store, set_model_status
from tally_model.layouts import SHIPPED, wrapped_bytes
from tally_stack.local_s3 import MOTO_ACCESS_KEY, MOTO_SECRET_KEY
from tally_storage import ObjectStore, S3Settings
from tally_upload.app import create_app
from tally_upload.config import Settings

pytestmark = pytest.mark.integration

MAX_MODEL_BYTES = 4_000_000  # the shipped model is ~2.5 MB
YOLOV8 = wrapped_bytes("yolov8")
LABELS = json.dumps(["seedling", "weed"])


@dataclass
class Registry:
    upload: httpx.AsyncClient
    gateway: httpx.AsyncClient
    objects: ObjectStore
    store: Store
    key_a: str
    key_b: str

    async def add(self, key: str, data: bytes = YOLOV8, **fields: str) -> httpx.Response:
        form = {"name": "plugs", "format": "yolov8", "labels": LABELS, **fields}
        return await self.upload.post(
            "/v1/models",
            data=form,
            files={"file": ("model.onnx", data, "application/octet-stream")},
            headers={"Authorization": f"Bearer {key}"},
        )

    async def get(self, key: str, path: str) -> httpx.Response:
        return await self.gateway.get(path, headers={"Authorization": f"Bearer {key}"})

    async def delete(self, key: str, path: str) -> httpx.Response:
        return await self.gateway.delete(path, headers={"Authorization": f"Bearer {key}"})

    async def stored(self) -> list[str]:
        listing = await self.objects._client.list_objects_v2(Bucket=self.objects.bucket)
        return sorted(o["Key"] for o in listing.get("Contents", []))

    async def rows(self) -> int:
        return int(await self.store.pool.fetchval("SELECT count(*) FROM models"))


@pytest.fixture
async def registry(database: str, s3_endpoint: str, amqp_url: str) -> AsyncIterator[Registry]:
    bucket = f"models-{uuid.uuid4().hex[:10]}"
    topology = Topology(prefix=f"test-{uuid.uuid4().hex[:10]}")
    settings = Settings(
        database_url=SecretStr(database),
        amqp_url=SecretStr(amqp_url),
        bus_prefix=topology.prefix,
        redis_url=SecretStr("redis://127.0.0.1:6379/15"),
        s3_endpoint_url=s3_endpoint,
        s3_bucket=bucket,
        s3_access_key_id=MOTO_ACCESS_KEY,
        s3_secret_access_key=SecretStr(MOTO_SECRET_KEY),
        max_model_bytes=MAX_MODEL_BYTES,
    )
    app = create_app(settings)
    s3 = S3Settings(
        bucket=bucket,
        endpoint_url=s3_endpoint,
        access_key_id=MOTO_ACCESS_KEY,
        secret_access_key=MOTO_SECRET_KEY,
    )
    try:
        async with (
            Store.open(database) as store,
            started(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://upload",
                event_hooks={"response": [Conformance(app).check]},
            ) as upload,
            serving(gateway_settings(database, s3_endpoint, amqp_url, bucket)) as (_, gateway),
            ObjectStore.open(s3) as objects,
        ):
            key_a = (await store.create_api_key((await store.create_tenant("a")).id)).key
            key_b = (await store.create_api_key((await store.create_tenant("b")).id)).key
            yield Registry(upload, gateway, objects, store, key_a, key_b)
    finally:
        async with await aio_pika.connect(amqp_url) as connection:
            await topology.delete(await connection.channel())


def _error(response: httpx.Response) -> tuple[int, str, str]:
    body: dict[str, Any] = response.json()
    return response.status_code, body["error"]["code"], body["error"]["message"]


async def test_an_uploaded_model_is_recorded_validating_and_a_second_upload_is_version_2(
    registry: Registry,
) -> None:
    first = await registry.add(registry.key_a)
    assert first.status_code == 201, first.text
    model = first.json()
    assert {k: model[k] for k in ("name", "version", "format", "labels", "input_size")} == {
        "name": "plugs",
        "version": 1,
        "format": "yolov8",
        "labels": ["seedling", "weed"],
        "input_size": None,
    }
    assert (model["status"], model["error"], model["shared"], model["default"]) == (
        "validating",
        None,
        False,
        False,
    )
    second = await registry.add(registry.key_a)
    assert second.json()["version"] == 2
    stored = await registry.stored()
    assert len(stored) == 2
    assert all("/models/" in key and key.endswith(".onnx") for key in stored)
    assert await registry.objects.get_bytes(stored[0]) == YOLOV8

    listed = (await registry.get(registry.key_a, "/v1/models")).json()["models"]
    # The shared default first, then the tenant's own: the newest version first.
    assert [(m["name"], m["version"], m["default"]) for m in listed] == [
        ("seedlings", 1, True),
        ("plugs", 2, False),
        ("plugs", 1, False),
    ]
    assert listed[0]["status"] == "ready"
    one = await registry.get(registry.key_a, f"/v1/models/{model['model_id']}")
    assert one.json() == model


async def test_another_tenants_model_is_not_found_and_cannot_be_deleted(registry: Registry) -> None:
    model = (await registry.add(registry.key_a)).json()
    path = f"/v1/models/{model['model_id']}"
    assert _error(await registry.get(registry.key_b, path))[:2] == (404, "not_found")
    assert _error(await registry.delete(registry.key_b, path))[:2] == (404, "not_found")
    listed = (await registry.get(registry.key_b, "/v1/models")).json()["models"]
    assert [m["name"] for m in listed] == ["seedlings"]
    # Tenant b's own "plugs" starts at version 1: names are per tenant.
    assert (await registry.add(registry.key_b)).json()["version"] == 1
    assert (await registry.get(registry.key_a, path)).status_code == 200


async def test_a_deleted_model_is_gone_with_its_file_and_the_shared_default_stays(
    registry: Registry,
) -> None:
    model = (await registry.add(registry.key_a)).json()
    path = f"/v1/models/{model['model_id']}"
    assert (await registry.delete(registry.key_a, path)).status_code == 204
    assert (await registry.get(registry.key_a, path)).status_code == 404
    assert await registry.stored() == []
    # A version is never given twice.
    assert (await registry.add(registry.key_a)).json()["version"] == 2

    default = (await registry.get(registry.key_a, "/v1/models")).json()["models"][0]
    status, code, message = _error(
        await registry.delete(registry.key_a, f"/v1/models/{default['model_id']}")
    )
    assert (status, code) == (403, "shared_model")
    assert message == "model seedlings:1 is shared: only an operator deletes it"


def _custom_operator_model() -> bytes:
    """The yolov8 model with one node moved into a custom operator domain."""
    model = onnx.load_model_from_string(YOLOV8)
    model.graph.node[-1].domain = "com.example.fastnms"
    model.opset_import.append(helper.make_opsetid("com.example.fastnms", 1))
    return model.SerializeToString()


@pytest.mark.parametrize(
    ("data", "fields", "status", "code", "message"),
    [
        (
            _custom_operator_model(),
            {},
            422,
            "model_custom_operators",
            "domains 'com.example.fastnms'",
        ),
        (
            SHIPPED.read_bytes(),
            {"format": "yolov8"},
            422,
            "model_format_mismatch",
            "a yolov8 model takes float slices; this one's input 'images' is uint8",
        ),
        (
            wrapped_bytes("yolov5"),
            {"format": "yolov8"},
            422,
            "model_format_mismatch",
            "is what a yolov5 model of 2 classes gives, not a yolov8 one",
        ),
        (YOLOV8[: len(YOLOV8) // 2], {}, 422, "model_corrupt", "the file is not an ONNX model"),
        (
            YOLOV8 + b"\0" * (MAX_MODEL_BYTES - len(YOLOV8) + 1),
            {},
            413,
            "model_too_large",
            "the limit is 4,000,000 bytes",
        ),
        (YOLOV8, {"labels": '["one"]'}, 422, "model_labels_mismatch", "scores 2 classes"),
        (YOLOV8, {"labels": "seedling,weed"}, 422, "invalid_request", "JSON list"),
        (YOLOV8, {"labels": '["a", "a"]'}, 422, "invalid_request", "names each class once"),
        (YOLOV8, {"name": "Plugs!"}, 422, "invalid_request", "`name` is lower-case"),
        (YOLOV8, {"format": "detr"}, 422, "invalid_request", "one of tally, yolov8, yolov5"),
        (YOLOV8, {"input_size": "12"}, 422, "invalid_request", "32 to 4096"),
    ],
    ids=[
        "custom-operator",
        "tally-graph-declared-yolov8",
        "yolov5-graph-declared-yolov8",
        "corrupt",
        "too-large",
        "labels-count",
        "labels-not-json",
        "labels-twice",
        "bad-name",
        "unknown-format",
        "input-size",
    ],
)
async def test_a_model_that_fails_a_check_is_refused_in_the_envelope_and_nothing_is_stored(
    registry: Registry, data: bytes, fields: dict[str, str], status: int, code: str, message: str
) -> None:
    before = await registry.rows()
    refused = await registry.add(registry.key_a, data, **fields)
    got_status, got_code, got_message = _error(refused)
    assert (got_status, got_code) == (status, code), refused.text
    assert message in got_message
    assert await registry.stored() == []
    assert await registry.rows() == before
    # The refusal cost nothing else: the next good upload is version 1.
    assert (await registry.add(registry.key_a)).json()["version"] == 1


async def test_a_form_without_its_file_or_fields_says_what_is_missing(registry: Registry) -> None:
    auth = {"Authorization": f"Bearer {registry.key_a}"}
    no_file = await registry.upload.post(
        "/v1/models", data={"name": "x", "format": "yolov8", "labels": LABELS}, headers=auth
    )
    assert _error(no_file)[:2] == (415, "unsupported_media_type")  # a urlencoded form
    no_name = await registry.upload.post(
        "/v1/models",
        data={"format": "yolov8", "labels": LABELS},
        files={"file": ("m.onnx", YOLOV8)},
        headers=auth,
    )
    assert _error(no_name) == (422, "invalid_request", "the form has no `name` field")
    as_json = await registry.upload.post("/v1/models", json={"name": "x"}, headers=auth)
    assert _error(as_json)[:2] == (415, "unsupported_media_type")
    assert await registry.stored() == []


async def _session(registry: Registry, key: str, params: dict[str, Any]) -> httpx.Response:
    return await registry.upload.post(
        "/v1/sessions", json={"params": params}, headers={"Authorization": f"Bearer {key}"}
    )


async def _ready(registry: Registry, model_id: str) -> None:
    """What tally-models does once its dry run on Triton passed (tests/integration/
    test_model_control.py runs the real one)."""
    async with registry.store.transaction() as connection:
        await set_model_status(connection, uuid.UUID(model_id), "ready")


async def test_a_session_runs_the_model_it_names_once_it_is_ready(registry: Registry) -> None:
    default = await _session(registry, registry.key_a, {})
    assert default.json()["params"]["model"] == "seedlings:1"

    model = (await registry.add(registry.key_a)).json()
    waiting = await _session(registry, registry.key_a, {"model": "plugs"})
    assert _error(waiting) == (409, "model_not_ready", "model plugs:1 is still being validated")
    await _ready(registry, model["model_id"])
    named = await _session(registry, registry.key_a, {"model": "plugs"})
    assert named.status_code == 201, named.text
    assert named.json()["params"]["model"] == "plugs:1"
    assert (await _session(registry, registry.key_a, {"model": "plugs:1"})).status_code == 201
    # The session is recorded on that version.
    stored = await registry.store.pool.fetchval(
        "SELECT model_id FROM sessions WHERE id = $1", uuid.UUID(named.json()["session_id"])
    )
    assert str(stored) == model["model_id"]
    shown = await registry.get(registry.key_a, f"/v1/sessions/{named.json()['session_id']}")
    assert shown.json()["params"]["model"] == "plugs:1"


async def test_a_session_cannot_name_a_model_it_may_not_see_or_that_failed(
    registry: Registry,
) -> None:
    model = (await registry.add(registry.key_a)).json()
    await _ready(registry, model["model_id"])
    assert _error(await _session(registry, registry.key_b, {"model": "plugs"}))[:2] == (
        404,
        "model_not_found",
    )
    assert _error(await _session(registry, registry.key_a, {"model": "plugs:7"}))[:2] == (
        404,
        "model_not_found",
    )
    bad = await _session(registry, registry.key_a, {"model": "Plugs!"})
    assert _error(bad)[:2] == (422, "invalid_request")
    failed = (await registry.add(registry.key_a, name="broken")).json()
    async with registry.store.transaction() as connection:
        await set_model_status(
            connection, uuid.UUID(failed["model_id"]), "failed", "the dry run failed"
        )
    refused = await _session(registry, registry.key_a, {"model": "broken"})
    assert _error(refused) == (
        409,
        "model_not_ready",
        "model broken:1 failed its validation: the dry run failed",
    )
    shown = await registry.get(registry.key_a, f"/v1/models/{failed['model_id']}")
    assert (shown.json()["status"], shown.json()["error"]) == ("failed", "the dry run failed")


async def test_a_static_shape_models_input_size_is_the_sessions_slice_size(
    registry: Registry,
) -> None:
    model = (await registry.add(registry.key_a, input_size="640")).json()
    assert model["input_size"] == 640
    await _ready(registry, model["model_id"])
    session = await _session(registry, registry.key_a, {"model": "plugs"})
    assert session.json()["params"]["slice_size"] == 640
    conflicting = await _session(registry, registry.key_a, {"model": "plugs", "slice_size": 512})
    assert _error(conflicting) == (
        422,
        "invalid_request",
        "model plugs:1 takes slices of 640 pixels only; leave slice_size out or make it 640",
    )


async def test_a_model_a_session_with_work_left_runs_cannot_be_deleted(registry: Registry) -> None:
    model = (await registry.add(registry.key_a)).json()
    await _ready(registry, model["model_id"])
    session = (await _session(registry, registry.key_a, {"model": "plugs"})).json()
    tenant = await registry.store.pool.fetchval(
        "SELECT tenant_id FROM sessions WHERE id = $1", uuid.UUID(session["session_id"])
    )
    await registry.store.pool.execute(
        """INSERT INTO jobs (id, tenant_id, session_id, image_id, filename, object_key, width,
                             height, status, phase, processed, total, chunk_count)
           VALUES ($1, $2, $3, $4, 'a.jpg', 'k', 10, 10, 'queued', 'queued', 0, 1, 1)""",
        uuid.uuid4(),
        tenant,
        uuid.UUID(session["session_id"]),
        uuid.uuid4(),
    )
    path = f"/v1/models/{model['model_id']}"
    status, code, message = _error(await registry.delete(registry.key_a, path))
    assert (status, code) == (409, "model_in_use")
    assert message.startswith("model plugs:1 is in use by 1 session(s) with work left")
    assert (await registry.get(registry.key_a, path)).status_code == 200
    await registry.store.pool.execute("UPDATE jobs SET status = 'completed'")
    assert (await registry.delete(registry.key_a, path)).status_code == 204
