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
from tally_db import Store
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
