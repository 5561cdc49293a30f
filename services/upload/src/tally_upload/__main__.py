"""`tally-upload`: serve the upload API (SIGTERM drains in-flight requests, then exits)."""

from __future__ import annotations

import uvicorn

from tally_telemetry import configure_tracing
from tally_upload.app import create_app
from tally_upload.config import Settings
from tally_web import configure_logging


def main() -> None:
    configure_logging()
    settings = Settings()
    configure_tracing("tally-upload")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
        access_log=False,
    )


if __name__ == "__main__":
    main()
