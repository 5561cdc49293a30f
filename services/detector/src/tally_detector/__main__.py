"""`tally-detector`: consume DetectChunks until SIGTERM, then finish the chunk in hand."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging

from redis.asyncio import Redis

from tally_detector.config import Settings
from tally_detector.deps import Deps, PhotoCache
from tally_detector.handlers import give_up_chunk, handle_detect_chunk
from tally_inference import TritonModel
from tally_storage import ObjectStore
from tally_telemetry import run_worker, set_readiness

log = logging.getLogger("tally_detector")


async def run(settings: Settings, stop: asyncio.Event) -> None:
    s3 = settings.s3
    async with (
        Redis.from_url(settings.redis_url.get_secret_value()) as redis,
        ObjectStore.open(s3) as objects,
        TritonModel(settings.triton_url) as model,
        await settings.connect_bus() as bus,
    ):
        deps = Deps(settings, bus, objects, model, PhotoCache(), redis)

        async def readiness() -> dict[str, bool]:
            return {"bus": bus.is_connected, "redis": bool(await redis.ping())}

        set_readiness(readiness)
        consumer = await bus.consume(
            bus.topology.chunks_queue,
            functools.partial(handle_detect_chunk, deps=deps),
            prefetch=settings.prefetch,
            give_up=functools.partial(give_up_chunk, deps=deps),
        )
        log.info("detector %s ready (Triton at %s)", settings.detector_id, settings.triton_url)
        await stop.wait()
        log.info("stopping: finishing the chunk in hand (up to %.0f s)", settings.shutdown_grace_s)
        with contextlib.suppress(TimeoutError):
            await consumer.stop(settings.shutdown_grace_s)


def main() -> None:
    settings = Settings()
    run_worker("tally-detector", functools.partial(run, settings))


if __name__ == "__main__":
    main()
