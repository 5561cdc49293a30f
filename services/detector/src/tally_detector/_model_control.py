"""The model registry's hand on one Triton (explicit model control): validation of new
versions, and the models Triton serves kept to what sessions need.

- **Validation**: a version recorded `validating` (its static checks passed at upload) is loaded
  through Triton's repository API with a configuration made for it and its file sent in the
  request (no shared file system), run once on a blank slice through its layout's adapter, and
  marked `ready`, or `failed` with Triton's or the check's words (and unloaded).
- **Reconciliation**: every model in use (the default, and those of sessions with work left) is
  loaded; on every Triton start (Triton not answering, then answering again) all of them are
  loaded before readiness says so. Versions not in use for `idle_unload_s`, deleted ones, and the
  least recently used past `max_loaded` are unloaded.

The built-in default lives in Triton's own repository (loaded at its start with --load-model);
it is checked like the others, and loaded by name when missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import asyncpg
import numpy as np
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from tally_db import (
    MODELS_CHANNEL,
    Model,
    Store,
    deleted_models,
    models_in_use,
    models_to_validate,
    set_model_status,
)
from tally_inference import InferenceError, TritonModel, layout_of
from tally_storage import ObjectNotFoundError, ObjectStore

log = logging.getLogger("tally_detector.models")

TritonBackend = Literal["python", "onnxruntime"]
# A dry run's slice side when the model takes any multiple of 32.
DRY_RUN_SIZE = 256
MAX_BATCH = 16


def triton_config(model: Model, backend: TritonBackend) -> dict[str, Any]:
    """Triton's configuration of `model`: the CPU Python backend wrapping ONNX Runtime (local
    stack, CI) or the ONNX Runtime backend with dynamic batching (GPU nodes)."""
    layout = layout_of(model.format)
    side = model.input_size or -1
    dims = [3, side, side] if layout.channels_first else [side, side, 3]
    if not model.batched:
        dims = [1, *dims]
    config: dict[str, Any] = {
        "name": model.triton_name,
        "backend": backend,
        "max_batch_size": MAX_BATCH if model.batched else 0,
        "input": [
            {"name": model.input_name, "data_type": f"TYPE_{layout.input_datatype}", "dims": dims}
        ],
        "output": [
            {
                "name": model.output_name,
                "data_type": "TYPE_FP32",
                "dims": [-1, -1] if model.batched else [-1, -1, -1],
            }
        ],
        "instance_group": [{"kind": "KIND_CPU" if backend == "python" else "KIND_GPU"}],
        "parameters": {"onnx_file": {"string_value": "model.onnx"}},
    }
    if model.batched:
        config["dynamic_batching"] = {"max_queue_delay_microseconds": 2000}
    if backend == "onnxruntime":
        config["default_model_filename"] = "model.onnx"
        del config["parameters"]
    return config


@dataclass(frozen=True, slots=True)
class ControlSettings:
    triton_url: str
    backend: TritonBackend
    python_model_file: Path  # deploy/triton/cpu/tally_detector/1/model.py (Python backend)
    idle_unload_s: float
    max_loaded: int
    poll_s: float
    timeout_s: float = 120.0


class ModelControl:
    def __init__(self, store: Store, objects: ObjectStore, settings: ControlSettings) -> None:
        self._store = store
        self._objects = objects
        self._settings = settings
        self._client = InferenceServerClient(settings.triton_url)
        # What this controller loaded, by Triton name, and when each was last wanted.
        self._wanted_at: dict[str, float] = {}
        self._reconciled = False
        self._wake = asyncio.Event()

    @property
    def reconciled(self) -> bool:
        """Triton answers and serves every model in use (since its last start)."""
        return self._reconciled

    async def close(self) -> None:
        await self._client.close()

    async def triton_live(self) -> bool:
        try:
            return bool(await self._client.is_server_live(client_timeout=5))
        except InferenceServerException:
            return False

    async def _ready(self, model: Model) -> bool:
        try:
            return bool(await self._client.is_model_ready(model.triton_name, client_timeout=10))
        except InferenceServerException:
            return False

    async def load(self, model: Model) -> None:
        """Load `model` on Triton (InferenceError with Triton's words when it cannot)."""
        if model.object_key is None:  # the built-in: Triton's own repository has it
            await self._call("load", self._client.load_model(model.triton_name))
            return
        files: dict[str, bytes] = {
            "file:1/model.onnx": await self._objects.get_bytes(model.object_key)
        }
        if self._settings.backend == "python":
            files["file:1/model.py"] = self._settings.python_model_file.read_bytes()
        config = json.dumps(triton_config(model, self._settings.backend))
        await self._call(
            "load",
            self._client.load_model(
                model.triton_name,
                config=config,
                files=files,
                client_timeout=self._settings.timeout_s,
            ),
        )

    async def unload(self, triton_name: str) -> None:
        with contextlib.suppress(InferenceError):
            await self._call("unload", self._client.unload_model(triton_name))
        self._wanted_at.pop(triton_name, None)

    async def _call(self, what: str, call: Any) -> None:
        try:
            await call
        except InferenceServerException as exc:
            raise InferenceError(f"Triton could not {what} the model: {exc.message()}") from None

    async def dry_run(self, model: Model) -> None:
        """One blank slice through the model's adapter: InferenceError unless its output is
        the layout's, scoring one class per label."""
        side = model.input_size or DRY_RUN_SIZE
        served = TritonModel(
            self._settings.triton_url,
            model.triton_name,
            timeout_s=self._settings.timeout_s,
            model_format=model.format,  # type: ignore[arg-type]
            input_name=model.input_name,
            output_name=model.output_name,
        )
        async with served:
            rows = await served.infer(np.zeros((1, side, side, 3), np.uint8))
        classes = rows.shape[-1] - 4
        if classes != len(model.labels):
            raise InferenceError(
                f"the model scores {classes} classes on Triton, but it has "
                f"{len(model.labels)} labels"
            )

    async def validate(self, model: Model) -> bool:
        """Load, dry-run and mark `model` ready or failed; False (and still `validating`) when
        Triton went away meanwhile, which says nothing of the model."""
        try:
            await self.load(model)
            await self.dry_run(model)
        except (InferenceError, OSError, ObjectNotFoundError) as exc:
            if not await self.triton_live():
                log.warning("model %s: Triton went away during its validation", model.reference)
                self._reconciled = False
                return False
            log.warning("model %s (%s) failed its validation: %s", model.reference, model.id, exc)
            await self.unload(model.triton_name)
            async with self._store.transaction() as connection:
                await set_model_status(connection, model.id, "failed", str(exc))
            return True
        self._wanted_at[model.triton_name] = time.monotonic()
        async with self._store.transaction() as connection:
            await set_model_status(connection, model.id, "ready")
        log.info("model %s (%s) is ready on Triton", model.reference, model.id)
        return True

    async def step(self) -> None:
        """Validate what waits, then reconcile Triton with what is in use."""
        if not await self.triton_live():
            if self._reconciled:
                log.warning(
                    "Triton at %s does not answer: reconciling once it is back",
                    self._settings.triton_url,
                )
            self._reconciled = False
            return
        for model in await models_to_validate(self._store.pool):
            if not await self.validate(model):
                return  # Triton went away: the next steps wait for it
        await self.reconcile()

    async def reconcile(self) -> None:
        now = time.monotonic()
        in_use = await models_in_use(self._store.pool)
        for model in in_use:
            self._wanted_at[model.triton_name] = now
            if await self._ready(model):
                continue
            log.info(
                "loading %s (%s) on Triton: in use, not served", model.reference, model.triton_name
            )
            try:
                await self.load(model)
            except (InferenceError, OSError, ObjectNotFoundError) as exc:
                if not await self.triton_live():
                    self._reconciled = False
                    return
                # This model alone: the others are served, and readiness must not wait on it
                # (its chunks wait, then go to the dead letters and fail their jobs).
                log.error("could not load model %s in use: %s", model.reference, exc)
        await self._unload_surplus({m.triton_name for m in in_use}, now)
        if not self._reconciled:
            log.info("Triton serves every model in use (%d)", len(in_use))
        self._reconciled = True

    async def _unload_surplus(self, in_use: set[str], now: float) -> None:
        for name in await deleted_models(self._store.pool, list(self._wanted_at)):
            log.info("unloading %s: deleted", name)
            await self.unload(name)
        idle = [
            name
            for name, at in self._wanted_at.items()
            if name not in in_use and now - at > self._settings.idle_unload_s
        ]
        for name in idle:
            log.info("unloading %s: unused for %.0f s", name, self._settings.idle_unload_s)
            await self.unload(name)
        extra = len(self._wanted_at) - self._settings.max_loaded
        if extra > 0:
            oldest = sorted(
                (name for name in self._wanted_at if name not in in_use),
                key=self._wanted_at.__getitem__,
            )
            for name in oldest[:extra]:
                log.info(
                    "unloading %s: over the budget of %d models", name, self._settings.max_loaded
                )
                await self.unload(name)

    def wake(self, *_args: object) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event, dsn: str) -> None:
        """Steps every `poll_s`, and at once when an upload NOTIFYs, until `stop`."""
        listener: asyncpg.Connection = await asyncpg.connect(dsn)
        await listener.add_listener(MODELS_CHANNEL, self.wake)
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    await self.step()
                except (asyncpg.PostgresError, OSError) as exc:
                    log.warning("model control step failed (retrying): %s", exc)
                except Exception:
                    # One model's surprise must not stop the others' reconciliation.
                    log.exception("model control step failed (retrying)")
                woken = asyncio.create_task(self._wake.wait())
                await asyncio.wait(
                    {woken, stopping},
                    timeout=self._settings.poll_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                woken.cancel()
        finally:
            stopping.cancel()
            await listener.close()
