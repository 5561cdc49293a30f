"""`tally-orchestrator`: consume PhotoUploaded and dispatch chunks until SIGTERM, then drain."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging

from tally_orchestrator._backlog import export_backlog
from tally_orchestrator.config import Settings
from tally_orchestrator.deps import Deps
from tally_orchestrator.handlers import (
    give_up_photo,
    give_up_result,
    handle_cancel,
    handle_chunk_result,
    handle_photo_uploaded,
    sweep_stalled,
)
from tally_worker import run_worker, set_readiness

log = logging.getLogger("tally_orchestrator")


async def run(settings: Settings, stop: asyncio.Event) -> None:
    async with Deps.open(settings) as deps:
        relay, bus = deps.relay, deps.bus
        relay_task = asyncio.create_task(relay.run(), name="outbox-relay")
        backlog_task = asyncio.create_task(
            export_backlog(deps.records, settings.backlog_interval_s), name="backlog"
        )

        async def readiness() -> dict[str, bool]:
            return {"database": await deps.store.ping(), "bus": bus.is_connected}

        set_readiness(readiness)
        dispatch_task = asyncio.create_task(deps.dispatcher.run(), name="dispatch")
        waits_task = asyncio.create_task(deps.waits.run(), name="waits")
        sweep_task = asyncio.create_task(sweep_stalled(deps), name="stalled-jobs")
        consumers = [
            await bus.consume(
                bus.topology.photos_queue,
                functools.partial(handle_photo_uploaded, deps=deps),
                prefetch=settings.prefetch,
                give_up=functools.partial(give_up_photo, deps=deps),
            ),
            await bus.consume(
                bus.topology.results_queue,
                functools.partial(handle_chunk_result, deps=deps),
                prefetch=settings.prefetch,
                give_up=functools.partial(give_up_result, deps=deps),
            ),
            await bus.consume(
                bus.topology.cancels_queue,
                functools.partial(handle_cancel, deps=deps),
                prefetch=settings.prefetch,
            ),
        ]
        log.info("orchestrator ready")
        await stop.wait()
        log.info("stopping: finishing messages in hand (up to %.0f s)", settings.shutdown_grace_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.gather(*(c.stop(settings.shutdown_grace_s) for c in consumers))
        dispatch_task.cancel()
        waits_task.cancel()
        await relay.drain()
        relay_task.cancel()
        backlog_task.cancel()
        sweep_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay_task


def main() -> None:
    settings = Settings()
    run_worker("tally-orchestrator", functools.partial(run, settings))


if __name__ == "__main__":
    main()
