"""Liveness, readiness and Prometheus metrics, the same on every HTTP service.

Readiness asks `app.state.readiness()`, an async function each service sets in its lifespan that
returns its named checks (database reachable, bus connected, ...).
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

health_router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, bool] = Field(examples=[{"started": True, "database": True, "bus": True}])


@health_router.get("/healthz")
async def healthz() -> Health:
    return Health(status="ok")


@health_router.get(
    "/readyz",
    response_class=JSONResponse,
    responses={200: {"model": Readiness}, 503: {"model": Readiness, "description": "not ready"}},
)
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


@health_router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus metrics"}},
)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
