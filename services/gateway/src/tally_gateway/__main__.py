"""`tally-gateway`: serve the read side of the API (SIGTERM drains in-flight requests)."""

from __future__ import annotations

import gc
import resource

import uvicorn

from tally_gateway._gc import watch_collections
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
    # A young collection every 20,000 allocations, a middle one every 5 of those: with 20
    # (before) a middle collection held up to 400,000 objects and 10,000 streams for 130-430 ms
    # (make bench-status, 3C).
    gc.set_threshold(20_000, 5, 20)
    watch_collections()
    raise_open_files_limit()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        backlog=settings.listen_backlog,
        limit_concurrency=settings.max_connections,
        # The edge's X-Forwarded-For is read where it matters (tally_web.client_address): no
        # middleware layer to rewrite the scope, held by every open stream.
        proxy_headers=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
        access_log=False,
    )


def raise_open_files_limit() -> None:
    """Each open stream is a socket: the soft limit on open files (often 1,024) up to the hard
    one, which the container or the service manager sets (deploy/: 65,536)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


if __name__ == "__main__":
    main()
