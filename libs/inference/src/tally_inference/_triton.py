"""The model on a Triton server, over gRPC (asyncio), its input batches in shared memory when
Triton runs on the same host."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Callable
from multiprocessing.shared_memory import SharedMemory
from typing import Final, Literal, Self

import numpy as np
from numpy.typing import NDArray
from opentelemetry import trace
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from tally_inference._formats import ModelFormat, layout_of

MODEL_NAME: Final = "tally_detector"
INPUT_NAME: Final = "images"
OUTPUT_NAME: Final = "detections"
# What Triton says of a request naming a region it does not know (it restarted meanwhile).
UNKNOWN_REGION: Final = "Unable to find shared memory region"
# gRPC statuses that say Triton did not answer at all: a region not registered then says
# nothing about whether Triton could map it.
UNANSWERED: Final = ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED")
tracer = trace.get_tracer("tally_inference")
log = logging.getLogger(__name__)

# "auto": shared memory when Triton can map this host's regions, else gRPC; "on": shared memory
# or fail; "off": the batch always travels inside the gRPC request.
SharedMemoryMode = Literal["auto", "on", "off"]


class InferenceError(RuntimeError):
    """Triton refused or failed a request (the server's message is kept)."""


class _Region:
    """One system shared-memory region (/dev/shm), registered with Triton under its name."""

    def __init__(self, capacity: int) -> None:
        self.name = f"tally-{uuid.uuid4().hex}"
        self.memory = SharedMemory(self.name, create=True, size=capacity)
        self.capacity = capacity

    @property
    def key(self) -> str:
        return f"/{self.name}"

    def fill(self, shape: tuple[int, ...], cut: Callable[[NDArray[np.uint8]], None]) -> None:
        """`cut` writes the batch of `shape` into the region; no view of it outlives the call
        (one left would keep the region from being closed)."""
        view = np.ndarray(shape, np.uint8, buffer=self.memory.buf)
        try:
            cut(view)
        finally:
            del view

    def destroy(self) -> None:
        self.memory.close()
        self.memory.unlink()


class TritonModel:
    def __init__(
        self,
        url: str,
        model_name: str = MODEL_NAME,
        timeout_s: float = 60.0,
        shared_memory: SharedMemoryMode = "off",
        *,
        model_format: ModelFormat = "tally",
        input_name: str = INPUT_NAME,
        output_name: str = OUTPUT_NAME,
    ) -> None:
        """The model `model_name` on the Triton at `url`, in the layout of `model_format`
        (its adapter prepares every batch and turns the output into rows)."""
        self.url = url
        self.model_name = model_name
        self.timeout_s = timeout_s
        self.shared_memory = shared_memory
        self.layout = layout_of(model_format)
        self.input_name = input_name
        self.output_name = output_name
        self._client = InferenceServerClient(url)
        # Regions not lent to a request; one is made for each request in flight at the peak.
        self._free: list[_Region] = []
        # Regions hold uint8 slices: only a graph that takes them as they are reads one.
        self._mappable = shared_memory != "off" and self.layout.input_dtype is np.uint8
        self._announced = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for region in self._free:
            await self._forget(region)
        self._free.clear()
        await self._client.close()

    @property
    def uses_shared_memory(self) -> bool:
        """Whether batches go through shared memory (in "auto", until Triton refused a region)."""
        return self._mappable

    async def ready(self) -> bool:
        try:
            return bool(await self._client.is_model_ready(self.model_name))
        except InferenceServerException:
            return False

    async def infer(self, batch: NDArray[np.uint8]) -> NDArray[np.float32]:
        """The model's rows (B, N, 4 + C) for a uint8 batch (B, H, W, 3)."""
        _check(batch.dtype, batch.shape)
        region = await self._lend(batch.nbytes) if self._mappable else None
        if region is None:
            return await self._request(batch.shape, batch, None)
        return await self._through(region, batch.shape, functools.partial(np.copyto, src=batch))

    async def infer_cut(
        self, shape: tuple[int, ...], cut: Callable[[NDArray[np.uint8]], None]
    ) -> NDArray[np.float32]:
        """The model's rows for the uint8 batch of `shape` (B, H, W, 3) that `cut(array)` writes,
        in a worker thread, straight into what Triton reads: a shared-memory region when Triton
        can map this host's (no copy on the way), else the array the gRPC request is made of.
        `cut` keeps no reference to the array."""
        _check(np.dtype(np.uint8), shape)
        region = await self._lend(int(np.prod(shape))) if self._mappable else None
        if region is None:
            batch = np.empty(shape, np.uint8)
            await asyncio.to_thread(cut, batch)
            return await self._request(shape, batch, None)
        return await self._through(region, shape, cut)

    async def _through(
        self, region: _Region, shape: tuple[int, ...], cut: Callable[[NDArray[np.uint8]], None]
    ) -> NDArray[np.float32]:
        """Cut the batch into the region and run the model on it. The region goes back to the
        free ones, or is destroyed when anything failed (a request given up on: Triton may
        still read it)."""
        try:
            # Waited for even when the caller is cancelled: the thread writes into the region.
            filling = asyncio.ensure_future(asyncio.to_thread(region.fill, shape, cut))
            try:
                await asyncio.shield(filling)
            except asyncio.CancelledError:
                await asyncio.wait([filling])
                raise
            try:
                output = await self._request(shape, None, region)
            except InferenceError as exc:
                if UNKNOWN_REGION not in str(exc):
                    raise
                # Triton restarted and forgot every region: register them anew, once.
                self._drop_free()
                await self._register(region)
                output = await self._request(shape, None, region)
        except BaseException:
            await self._forget(region)
            raise
        self._free.append(region)
        return output

    async def _request(
        self, shape: tuple[int, ...], batch: NDArray[np.uint8] | None, region: _Region | None
    ) -> NDArray[np.float32]:
        if region is not None:
            request = InferInput(self.input_name, list(shape), "UINT8")
            request.set_shared_memory(region.name, int(np.prod(shape)))
        else:
            assert batch is not None
            prepared = self.layout.prepare(batch)
            request = InferInput(self.input_name, list(prepared.shape), self.layout.input_datatype)
            request.set_data_from_numpy(prepared)
        with tracer.start_as_current_span(
            "triton infer",
            kind=trace.SpanKind.CLIENT,
            attributes={
                "tally.model": self.model_name,
                "tally.batch_size": shape[0],
                "tally.shared_memory": region is not None,
            },
        ):
            try:
                response = await self._client.infer(
                    self.model_name,
                    [request],
                    outputs=[InferRequestedOutput(self.output_name)],
                    client_timeout=self.timeout_s,
                )
            except InferenceServerException as exc:
                raise InferenceError(f"Triton at {self.url} failed: {exc.message()}") from exc
        output = response.as_numpy(self.output_name)
        if output is None or output.shape[0] != shape[0]:
            raise InferenceError(f"Triton returned no usable {self.output_name!r} output")
        try:
            return self.layout.rows(np.asarray(output, dtype=np.float32))
        except ValueError as exc:
            raise InferenceError(
                f"{self.model_name}'s output is not {self.layout.format}'s: {exc}"
            ) from None

    async def _lend(self, nbytes: int) -> _Region | None:
        """A registered region of at least `nbytes`; None when Triton cannot map this host's
        shared memory (mode "auto": from then on every batch goes through gRPC)."""
        for i, region in enumerate(self._free):
            if region.capacity >= nbytes:
                return self._free.pop(i)
        if self._free:  # too small for this slice size: make room instead of piling up
            await self._forget(self._free.pop(0))
        try:
            region = _Region(nbytes)
        except OSError as exc:  # no /dev/shm here, or it is full
            self._refuse(f"no shared memory on this host ({exc})")
            return None
        try:
            await self._register(region)
        except InferenceServerException as exc:
            region.destroy()
            if exc.status() in UNANSWERED:
                raise InferenceError(f"Triton at {self.url} failed: {exc.message()}") from exc
            self._refuse(f"Triton cannot map this host's shared memory ({exc.message()})")
            return None
        if not self._announced:
            log.info("batches go to Triton at %s through shared memory", self.url)
            self._announced = True
        return region

    async def _register(self, region: _Region) -> None:
        await self._client.register_system_shared_memory(
            region.name, region.key, region.capacity, client_timeout=self.timeout_s
        )

    def _refuse(self, reason: str) -> None:
        if self.shared_memory == "on":
            raise InferenceError(f"TALLY_TRITON_SHARED_MEMORY is on, but {reason}")
        log.warning("%s: batches go to Triton at %s inside gRPC requests", reason, self.url)
        self._mappable = False

    async def _forget(self, region: _Region) -> None:
        """Unregister (Triton may be gone: then it forgot already) and free the region."""
        with contextlib.suppress(InferenceServerException):
            await self._client.unregister_system_shared_memory(
                region.name, client_timeout=self.timeout_s
            )
        region.destroy()

    def _drop_free(self) -> None:
        """Free the regions not lent (a restarted Triton no longer knows them)."""
        for region in self._free:
            region.destroy()
        self._free.clear()


def _check(dtype: np.dtype[np.generic], shape: tuple[int, ...]) -> None:
    if dtype != np.uint8 or len(shape) != 4 or shape[-1] != 3:
        raise ValueError(f"expected a uint8 batch (B, H, W, 3), got {dtype} {shape}")
