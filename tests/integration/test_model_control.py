"""`tally-models` on a real Triton (explicit model control, CPU Python backend), PostgreSQL and
moto's S3: a version recorded `validating` is loaded with its file sent in the request, dry-run
and marked ready (or failed, with Triton's words); a model in use comes back by itself after
Triton restarts; and what Triton serves then detects as the native model does."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from tests.eventually import eventually_async

from tally_db import Model, Store, get_model
from tally_detector._model_control import ControlSettings, ModelControl
from tally_detector.config import ModelControlSettings
from tally_inference import ModelFormat, TritonModel, decode_image
from tally_model.layouts import wrapped_bytes
from tally_stack.local_s3 import MOTO_ACCESS_KEY, MOTO_SECRET_KEY
from tally_stack.local_triton import LocalTriton
from tally_storage import ObjectStore, S3Settings
from tally_synth import PhotoSpec, render
from tally_upload._models import register_model

pytestmark = pytest.mark.integration

LABELS = ["seedling", "weed"]


@dataclass
class Control:
    control: ModelControl
    store: Store
    objects: ObjectStore
    triton: LocalTriton
    tenant: uuid.UUID

    async def record(
        self, model_format: ModelFormat, data: bytes, input_size: int | None = None
    ) -> Model:
        """A version as the upload service records it: checked, stored, `validating`."""
        return await register_model(
            self.store,
            self.objects,
            self.tenant,
            data,
            name=f"plugs-{model_format}",
            model_format=model_format,
            labels=LABELS,
            input_size=input_size,
            max_bytes=64 << 20,
        )

    async def reread(self, model: Model) -> Model:
        found = await get_model(self.store.pool, self.tenant, model.id)
        assert found is not None
        return found

    async def use(self, model: Model) -> None:
        """A session with work left that runs `model`."""
        session = await self.store.create_session(self.tenant, "uses it")
        await self.store.pool.execute(
            "UPDATE sessions SET model_id = $1 WHERE id = $2", model.id, session.id
        )
        await self.store.pool.execute(
            """INSERT INTO jobs (id, tenant_id, session_id, image_id, filename, object_key, width,
                                 height, status, phase, processed, total, chunk_count)
               VALUES ($1, $2, $3, $4, 'a.jpg', 'k', 10, 10, 'queued', 'queued', 0, 1, 1)""",
            uuid.uuid4(),
            self.tenant,
            session.id,
            uuid.uuid4(),
        )

    def served(self, model: Model) -> TritonModel:
        return TritonModel(
            self.triton.endpoints.grpc_url,
            model.triton_name,
            model_format=model.format,  # type: ignore[arg-type]
            input_name=model.input_name,
            output_name=model.output_name,
        )


@pytest.fixture
async def control(database: str, s3_endpoint: str, tmp_path: Path) -> AsyncIterator[Control]:
    s3 = S3Settings(
        bucket=f"models-{uuid.uuid4().hex[:10]}",
        endpoint_url=s3_endpoint,
        access_key_id=MOTO_ACCESS_KEY,
        secret_access_key=MOTO_SECRET_KEY,
    )
    triton = LocalTriton(runtime_dir=tmp_path / "triton")
    await asyncio.to_thread(triton.start)
    defaults = ModelControlSettings()
    settings = ControlSettings(
        triton_url=triton.endpoints.grpc_url,
        backend="python",
        python_model_file=defaults.triton_python_model,
        idle_unload_s=600,
        max_loaded=4,
        poll_s=0.5,
    )
    try:
        async with (
            Store.open(database) as store,
            ObjectStore.open(s3, create_bucket=True) as objects,
        ):
            tenant = (await store.create_tenant("a")).id
            model_control = ModelControl(store, objects, settings)
            try:
                yield Control(model_control, store, objects, triton, tenant)
            finally:
                await model_control.close()
    finally:
        await asyncio.to_thread(triton.stop)


def _photo_slices() -> np.ndarray:
    data, _truth = render(PhotoSpec(seed=5, index=0, width=1024, height=512))
    photo = decode_image(data)
    return np.stack([photo[:, :512], photo[:, 512:]])


@pytest.mark.parametrize("model_format", ["yolov8", "yolov5"])
async def test_a_yolo_version_is_validated_on_triton_and_detects_as_the_native_model(
    control: Control, model_format: ModelFormat
) -> None:
    model = await control.record(model_format, wrapped_bytes(model_format))
    assert model.status == "validating"
    await control.control.step()
    ready = await control.reread(model)
    assert (ready.status, ready.error) == ("ready", None)
    assert control.control.reconciled

    slices = _photo_slices()
    async with (
        control.served(ready) as served,
        TritonModel(control.triton.endpoints.grpc_url) as native,
    ):
        rows = await served.infer(slices)
        expected = await native.infer(slices)
    np.testing.assert_allclose(rows, expected, atol=1e-3, rtol=1e-5)


async def test_a_version_triton_cannot_run_is_marked_failed_with_the_reason(
    control: Control,
) -> None:
    # A static 100-pixel input passes the static checks; the network takes multiples of 32.
    model = await control.record("yolov8", wrapped_bytes("yolov8"), input_size=100)
    await control.control.step()
    failed = await control.reread(model)
    assert failed.status == "failed"
    assert failed.error is not None
    assert "multiples of 32" in failed.error


async def test_a_model_in_use_is_loaded_again_after_triton_restarts(control: Control) -> None:
    model = await control.record("yolov8", wrapped_bytes("yolov8"))
    await control.control.step()
    await control.use(await control.reread(model))

    await asyncio.to_thread(control.triton.stop)
    await control.control.step()
    assert not control.control.reconciled  # Triton is gone: readiness says so
    await asyncio.to_thread(control.triton.start)  # the same ports, its built-in model only
    async with control.served(model) as served:
        assert not await served.ready()

    async def reconciled() -> bool:
        await control.control.step()
        return control.control.reconciled

    # The first call may find the client's channel still reconnecting: a step or two.
    await eventually_async(reconciled, 60, every_s=0.5, what="Triton reconciled")
    async with control.served(model) as served:
        assert await served.ready()
        rows = await served.infer(np.zeros((1, 256, 256, 3), np.uint8))
    assert rows.shape[-1] == 6
