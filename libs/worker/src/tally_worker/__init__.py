"""What Tally's bus workers (orchestrator, detector, projector) share: one way to start and stop.

`run_worker` sets up logging and tracing, serves the worker's probes, and turns SIGTERM or SIGINT
into an event the worker awaits before it drains. (HTTP services get the same from uvicorn and
tally_web.)"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable

from tally_telemetry import configure_tracing
from tally_worker._probes import Probes, probes, set_readiness

__all__ = ["Probes", "probes", "run_worker", "set_readiness"]


def run_worker(service: str, run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Start a bus worker the same way everywhere: logging, tracing, probes (/healthz, /readyz,
    /metrics on TALLY_PROBES_PORT when set), and an event set by SIGTERM or SIGINT that `run`
    awaits before it drains its work and returns (readiness turns false at once)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    configure_tracing(service)

    async def serve() -> None:
        stop = asyncio.Event()

        def stopping() -> None:
            probes.stopping = True  # not ready from now on: no new work is routed here
            stop.set()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping)
        port = os.environ.get("TALLY_PROBES_PORT")
        if port:
            bound = await probes.start(os.environ.get("TALLY_PROBES_HOST", "127.0.0.1"), int(port))
            logging.getLogger(service).info("probes on port %d", bound)
        try:
            await run(stop)
        finally:
            await probes.close()

    asyncio.run(serve())
