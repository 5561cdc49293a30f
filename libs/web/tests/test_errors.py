"""The last resort: an exception no handler knows is a 500 in the envelope, logged with the
request id, and the connection serves the next request; every answer has a request id and
JSON is never stored by caches."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response
from tests.eventually import eventually_async

from tally_stack import free_port
from tally_web import install_error_handlers


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    async def boom() -> dict[str, str]:
        raise RuntimeError("secret library text")

    @app.get("/peer")
    async def peer(request: Request) -> dict[str, int]:
        assert request.client is not None
        return {"port": request.client.port}

    @app.get("/image")
    async def image() -> Response:
        return Response(b"\xff\xd8", media_type="image/jpeg")

    return app


@contextlib.asynccontextmanager
async def _served(app: FastAPI) -> AsyncIterator[str]:
    """The app on a real uvicorn (a test transport has no connection to keep or close)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    task = asyncio.create_task(server.serve())
    try:
        await eventually_async(lambda: server.started, what="uvicorn started")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def test_an_unhandled_exception_is_a_500_envelope_and_the_connection_stays_usable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with (
        _served(_app()) as url,
        httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=1)) as http,
    ):
        before = (await http.get("/peer")).json()["port"]
        failed = await http.get("/boom", headers={"X-Request-ID": "trace-42"})
        after = await http.get("/peer")
    assert failed.status_code == 500
    assert failed.headers["x-request-id"] == "trace-42"
    assert failed.json() == {
        "error": {
            "code": "internal",
            "message": "something went wrong on our side; the request id is trace-42",
        }
    }
    assert "secret" not in failed.text
    # The next request went over the same connection, and was answered.
    assert after.status_code == 200
    assert after.json()["port"] == before
    logged = [r for r in caplog.records if r.exc_info and "trace-42" in r.getMessage()]
    assert logged
    assert "secret library text" in str(logged[0].exc_info)


async def test_every_answer_has_a_request_id_ours_unless_the_one_sent_is_sane() -> None:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        fresh = await http.get("/peer")
        kept = await http.get("/peer", headers={"X-Request-ID": "abc.DEF_1-2"})
        odd = await http.get("/peer", headers={b"X-Request-ID": "a b\u00e9".encode("latin-1")})
        long = await http.get("/peer", headers={"X-Request-ID": "x" * 65})
        missing = await http.get("/nowhere")
    assert len(fresh.headers["x-request-id"]) == 32
    assert kept.headers["x-request-id"] == "abc.DEF_1-2"
    for answer in (odd, long):
        assert len(answer.headers["x-request-id"]) == 32
    assert missing.status_code == 404
    assert missing.headers["x-request-id"]


async def test_json_is_never_stored_images_keep_their_own_caching() -> None:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        body = await http.get("/peer")
        error = await http.get("/nowhere")
        image = await http.get("/image")
    assert body.headers["cache-control"] == "no-store"
    assert error.headers["cache-control"] == "no-store"
    assert "cache-control" not in image.headers
