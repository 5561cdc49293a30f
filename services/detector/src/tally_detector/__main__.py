"""`tally-detector`: consume DetectChunks until SIGTERM, then finish the chunk in hand."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal

from tally_bus import Bus, Topology
from tally_detector.config import Settings
from tally_detector.deps import Deps, PhotoCache
from tally_detector.handlers import handle_detect_chunk
from tally_inference import TritonModel
from tally_storage import ObjectStore, S3Settings
from tally_telemetry import configure_tracing

log = logging.getLogger("tally_detector")


async def run(settings: Settings, stop: asyncio.Event) -> None:
    s3 = S3Settings(
        bucket=settings.s3_bucket,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=(
            settings.s3_secret_access_key.get_secret_value()
            if settings.s3_secret_access_key
            else None
        ),
    )
    async with (
        ObjectStore.open(s3) as objects,
        TritonModel(settings.triton_url) as model,
        await Bus.connect(
            settings.amqp_url.get_secret_value(), Topology(settings.bus_prefix)
        ) as bus,
    ):
        deps = Deps(settings, bus, objects, model, PhotoCache())
        consumer = await bus.consume(
            bus.topology.chunks_queue,
            functools.partial(handle_detect_chunk, deps=deps),
            prefetch=settings.prefetch,
        )
        log.info("detector %s ready (Triton at %s)", settings.detector_id, settings.triton_url)
        await stop.wait()
        log.info("stopping: finishing the chunk in hand (up to %.0f s)", settings.shutdown_grace_s)
        with contextlib.suppress(TimeoutError):
            await consumer.stop(settings.shutdown_grace_s)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings()
    configure_tracing("tally-detector")

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run(settings, stop)

    asyncio.run(serve())


if __name__ == "__main__":
    main()
