"""Liveness, readiness and Prometheus metrics, the same on every HTTP service.

Readiness asks `app.state.readiness()`, an async function each service sets in its lifespan that
returns its named checks (database reachable, bus connected, ...).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

health_router = APIRouter(tags=["health"])


@health_router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@health_router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    readiness = getattr(request.app.state, "readiness", None)
    checks: dict[str, bool] = {"started": readiness is not None}
    if readiness is not None:
        checks |= await readiness()
    ready = all(checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
    )


@health_router.get("/metrics")
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
