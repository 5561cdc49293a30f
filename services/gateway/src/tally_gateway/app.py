"""The gateway's application: connections opened in one lifespan, routes mounted."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

from fastapi import FastAPI
from redis.asyncio import Redis

from tally_db import OutboxRelay, Store
from tally_gateway.config import Settings
from tally_gateway.deps import Deps
from tally_gateway.routes import (
    dashboard,
    events,
    exports,
    jobs,
    models,
    sessions,
    usage,
    webhooks,
)
from tally_storage import ObjectStore
from tally_web import RequestMetrics, health_router, install_error_handlers, install_rate_limits


def is_event_stream(scope: MutableMapping[str, Any]) -> bool:
    """An event stream's request has no span of FastAPI's telemetry: a span, its attributes and
    the request's data (~7 KiB) would be held for the stream's whole life, and it would end,
    and be exported, only hours later."""
    path: str = scope.get("path", "")
    return path.startswith("/v1/sessions/") and path.endswith("/events")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        s3 = settings.s3
        redis = Redis.from_url(settings.redis_url.get_secret_value())
        try:
            async with (
                Store.open(settings.database_url.get_secret_value()) as store,
                ObjectStore.open(s3) as objects,
                await settings.connect_bus() as bus,
            ):
                relay = OutboxRelay(store, bus.publish_encoded, settings.relay_interval_s)
                relay_task = asyncio.create_task(relay.run(), name="outbox-relay")
                deps = Deps.build(settings, store, redis, objects, bus, relay)
                app.state.callers = deps.callers
                app.state.limiter = deps.limiter
                app.state.deps = deps

                async def readiness() -> dict[str, bool]:
                    return {
                        "database": await store.ping(),
                        "redis": bool(await redis.ping()),
                        "bus": bus.is_connected,
                    }

                app.state.readiness = readiness
                try:
                    yield
                finally:
                    app.state.readiness = None
                    await deps.feeds.close()
                    await deps.streams.close()
                    relay_task.cancel()
                    await relay.drain()
        finally:
            await redis.aclose()

    # No redirect to the path with(out) its slash: POST /v1/sessions/ is a 404 in the envelope,
    # not a 307 to a URL built from whatever Host the client sent.
    app = FastAPI(
        title="Tally gateway",
        version="1",
        lifespan=lifespan,
        redirect_slashes=False,
        telemetry={"exclude": is_event_stream},
    )
    install_error_handlers(app)
    app.add_middleware(RequestMetrics, service="gateway")
    app.include_router(sessions.router)
    app.include_router(events.router)
    app.include_router(jobs.router)
    app.include_router(usage.router)
    app.include_router(webhooks.router)
    app.include_router(exports.router)
    app.include_router(models.router)
    app.include_router(health_router)
    dashboard.mount(app)
    install_rate_limits(app)
    return app
