"""`tally-detector`: consume DetectChunks until SIGTERM, then finish the chunk in hand."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging

from tally_detector.config import Settings
from tally_detector.deps import Deps
from tally_detector.handlers import give_up_chunk, handle_detect_chunk
from tally_inference import TritonModel
from tally_worker import run_worker, set_readiness

log = logging.getLogger("tally_detector")


async def run(settings: Settings, stop: asyncio.Event) -> None:
    async with (
        TritonModel(settings.triton_url, shared_memory=settings.triton_shared_memory) as model,
        await settings.connect_bus() as bus,
        Deps.open(settings, bus, model) as deps,
    ):

        async def readiness() -> dict[str, bool]:
            checks = {"bus": bus.is_connected, "redis": bool(await deps.redis.ping())}
            return checks | {"triton": await model.ready()}

        set_readiness(readiness)
        # A Triton still loading (minutes on GPUs) would fail every chunk taken meanwhile, and
        # after five attempts fail its job: take none until the model is ready.
        if not await _model_ready(model, settings.triton_url, stop):
            return
        consumer = await bus.consume(
            bus.topology.chunks_queue,
            functools.partial(handle_detect_chunk, deps=deps),
            prefetch=settings.prefetch,
            give_up=functools.partial(give_up_chunk, deps=deps),
            publish_to=bus.topology.chunk_result,
        )
        log.info("detector %s ready (Triton at %s)", settings.detector_id, settings.triton_url)
        await stop.wait()
        log.info("stopping: finishing the chunk in hand (up to %.0f s)", settings.shutdown_grace_s)
        with contextlib.suppress(TimeoutError):
            await consumer.stop(settings.shutdown_grace_s)


async def _ready_within(model: TritonModel, timeout_s: float) -> bool:
    try:
        return await asyncio.wait_for(model.ready(), timeout_s)
    except TimeoutError:  # an address that swallows packets
        return False


async def _model_ready(model: TritonModel, url: str, stop: asyncio.Event) -> bool:
    """Wait until Triton serves the model (True) or the detector is told to stop (False)."""
    waited = False
    while not await _ready_within(model, 5.0):
        if not waited:
            log.info("waiting for Triton at %s to serve the model", url)
            waited = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
        if stop.is_set():
            return False
    return True


def main() -> None:
    settings = Settings()
    run_worker("tally-detector", functools.partial(run, settings))


if __name__ == "__main__":
    main()
