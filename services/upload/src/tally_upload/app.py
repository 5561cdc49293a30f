"""The upload service's application: connections opened in one lifespan, routes mounted."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from tally_db import OutboxRelay, Store
from tally_storage import ObjectStore
from tally_upload.config import Settings
from tally_upload.deps import Deps
from tally_upload.routes import photos, sessions
from tally_web import RequestMetrics, health_router, install_error_handlers


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            store = await stack.enter_async_context(
                Store.open(settings.database_url.get_secret_value())
            )
            s3 = settings.s3
            objects = await stack.enter_async_context(ObjectStore.open(s3, create_bucket=True))
            bus = await stack.enter_async_context(await settings.connect_bus())

            relay = OutboxRelay(store, bus.publish_encoded, settings.relay_interval_s)
            relay_task = asyncio.create_task(relay.run(), name="outbox-relay")
            app.state.deps = Deps(settings, store, objects, bus, relay)

            async def readiness() -> dict[str, bool]:
                return {"database": await store.ping(), "bus": bus.is_connected}

            app.state.readiness = readiness
            try:
                yield
            finally:
                app.state.readiness = None
                relay_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await relay_task

    app = FastAPI(title="Tally upload", version="1", lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(RequestMetrics, service="upload")
    app.include_router(sessions.router)
    app.include_router(photos.router)
    app.include_router(health_router)
    return app
