"""The model on a Triton server, over gRPC (asyncio)."""

from __future__ import annotations

from typing import Final, Self

import numpy as np
from numpy.typing import NDArray
from opentelemetry import trace
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

MODEL_NAME: Final = "tally_detector"
INPUT_NAME: Final = "images"
OUTPUT_NAME: Final = "detections"
tracer = trace.get_tracer("tally_inference")


class InferenceError(RuntimeError):
    """Triton refused or failed a request (the server's message is kept)."""


class TritonModel:
    def __init__(self, url: str, model_name: str = MODEL_NAME, timeout_s: float = 60.0) -> None:
        self.url = url
        self.model_name = model_name
        self.timeout_s = timeout_s
        self._client = InferenceServerClient(url)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._client.close()

    async def ready(self) -> bool:
        try:
            return bool(await self._client.is_model_ready(self.model_name))
        except InferenceServerException:
            return False

    async def infer(self, batch: NDArray[np.uint8]) -> NDArray[np.float32]:
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[-1] != 3:
            raise ValueError(
                f"expected a uint8 batch (B, H, W, 3), got {batch.dtype} {batch.shape}"
            )
        request = InferInput(INPUT_NAME, list(batch.shape), "UINT8")
        request.set_data_from_numpy(batch)
        with tracer.start_as_current_span(
            "triton infer",
            kind=trace.SpanKind.CLIENT,
            attributes={"tally.model": self.model_name, "tally.batch_size": batch.shape[0]},
        ):
            try:
                response = await self._client.infer(
                    self.model_name,
                    [request],
                    outputs=[InferRequestedOutput(OUTPUT_NAME)],
                    client_timeout=self.timeout_s,
                )
            except InferenceServerException as exc:
                raise InferenceError(f"Triton at {self.url} failed: {exc.message()}") from exc
        output = response.as_numpy(OUTPUT_NAME)
        if output is None or output.shape[0] != batch.shape[0]:
            raise InferenceError(f"Triton returned no usable {OUTPUT_NAME!r} output")
        return np.asarray(output, dtype=np.float32)
