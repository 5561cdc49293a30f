"""`tally-gateway`: serve the read side of the API (SIGTERM drains in-flight requests)."""

from __future__ import annotations

import logging

import uvicorn

from tally_gateway.app import create_app
from tally_gateway.config import Settings
from tally_telemetry import configure_tracing


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings()
    configure_tracing("tally-gateway")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
        access_log=False,
    )


if __name__ == "__main__":
    main()
