"""`tally-gateway`: serve the read side of the API (SIGTERM drains in-flight requests)."""

from __future__ import annotations

import gc

import uvicorn

from tally_gateway.app import create_app
from tally_gateway.config import Settings
from tally_telemetry import configure_tracing
from tally_web import configure_logging


def main() -> None:
    configure_logging()
    settings = Settings()
    configure_tracing("tally-gateway")
    app = create_app(settings)
    # Thousands of open streams make many long-lived objects: keep what start-up made out of
    # the collector's way and collect the young generation less often, so that full
    # collections (which stall every stream at once) are rare.
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
        access_log=False,
    )


if __name__ == "__main__":
    main()
