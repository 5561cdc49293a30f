"""The upload service's application: connections opened in one lifespan, routes mounted."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from tally_upload.config import Settings
from tally_upload.deps import Deps
from tally_upload.routes import models, photos, sessions
from tally_web import RequestMetrics, health_router, install_error_handlers, install_rate_limits


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Deps.open(settings) as deps:
            relay_task = asyncio.create_task(deps.relay.run(), name="outbox-relay")
            app.state.deps = deps
            app.state.callers = deps.callers
            app.state.limiter = deps.limiter

            # Not Redis: the rate limits hold without it (in this process).
            async def readiness() -> dict[str, bool]:
                return {"database": await deps.store.ping(), "bus": deps.bus.is_connected}

            app.state.readiness = readiness
            try:
                yield
            finally:
                app.state.readiness = None
                relay_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await relay_task

    # No redirect to the path with(out) its slash: POST /v1/sessions/ is a 404 in the envelope,
    # not a 307 to a URL built from whatever Host the client sent.
    app = FastAPI(title="Tally upload", version="1", lifespan=lifespan, redirect_slashes=False)
    install_error_handlers(app)
    app.add_middleware(RequestMetrics, service="upload")
    app.include_router(sessions.router)
    app.include_router(photos.router)
    app.include_router(models.router)
    app.include_router(health_router)
    install_rate_limits(app)
    return app
