"""RequestMetrics counts every answer by route template and status, streams once at their start,
and a request that raises as a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from prometheus_client import REGISTRY

from tally_web import ApiError, RequestMetrics, install_error_handlers


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(RequestMetrics, service="test-metrics")

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        if item_id == 0:
            raise ApiError(404, "not_found", "no item 0")
        return {"item": item_id}

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            for n in range(3):
                yield f"data: {n}\n\n".encode()

        return StreamingResponse(body(), media_type="text/event-stream")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    return app


def _count(route: str, status: str, method: str = "GET") -> float:
    labels = {"service": "test-metrics", "method": method, "route": route, "status": status}
    return REGISTRY.get_sample_value("tally_http_requests_total", labels) or 0.0


async def test_answers_are_counted_by_route_template_and_status() -> None:
    before = {
        key: _count(*key)
        for key in [
            ("/items/{item_id}", "200"),
            ("/items/{item_id}", "404"),
            ("/stream", "200"),
            ("unmatched", "404"),
            ("/boom", "500"),
        ]
    }
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        assert (await http.get("/items/7")).status_code == 200
        assert (await http.get("/items/8")).status_code == 200
        assert (await http.get("/items/0")).status_code == 404
        assert (await http.get("/stream")).text.count("data:") == 3
        assert (await http.get("/nowhere")).status_code == 404
        assert (await http.get("/boom")).status_code == 500
    after = {key: _count(*key) for key in before}
    assert {key: after[key] - before[key] for key in before} == {
        ("/items/{item_id}", "200"): 2,
        ("/items/{item_id}", "404"): 1,
        ("/stream", "200"): 1,
        ("unmatched", "404"): 1,
        ("/boom", "500"): 1,
    }
    timed = REGISTRY.get_sample_value(
        "tally_http_request_duration_seconds_count",
        {"service": "test-metrics", "route": "/items/{item_id}"},
    )
    assert timed is not None
    assert timed >= 3


async def test_a_lifespan_passes_through_uncounted() -> None:
    seen: list[str] = []

    async def inner(scope: dict[str, object], receive: object, send: object) -> None:
        seen.append(str(scope["type"]))

    middleware = RequestMetrics(inner, service="test-metrics")  # type: ignore[arg-type]
    await middleware({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan"]
