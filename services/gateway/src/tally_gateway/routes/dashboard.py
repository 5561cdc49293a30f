"""The operator's dashboard: static files (no build step) served by the gateway behind the edge.

`/` is the page; `/dashboard/...` its scripts and styles. They are revalidated on every load
(`no-cache` with an ETag, so an unchanged file costs a 304) and may fetch nothing but this
origin (the Content-Security-Policy says so)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Final

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

FOLDER: Final = Path(str(resources.files("tally_gateway").joinpath("dashboard")))
HEADERS: Final = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
        "style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class _Files(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        return response


async def _page(request: Request) -> Response:
    response = FileResponse(FOLDER / "index.html", media_type="text/html")
    response.headers.update(HEADERS)
    return response


def mount(app: FastAPI) -> None:
    app.mount("/dashboard", _Files(directory=FOLDER), name="dashboard")
    app.add_route("/", _page, methods=["GET", "HEAD"])
