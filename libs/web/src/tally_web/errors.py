"""The error envelope of the HTTP contract: {"error": {"code": "...", "message": "..."}}, for
every error of every route, and the last resort for an exception nothing else handled."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tally_web.context import REQUEST_ID, request_id_from

log = logging.getLogger("tally_web.errors")


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.extra = extra


def envelope(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}, **extra}


class RequestContext:
    """Pure ASGI middleware around every request (streams pass straight through): its id
    (`request.state.request_id`, the log lines' and the `X-Request-ID` answered),
    `Cache-Control: no-store` on a JSON answer that sets none, and a 500 in the envelope for an
    exception that escaped every route and handler, logged with the request id.

    Starlette's own last resort re-raises once it has answered, and uvicorn then closes the
    connection: behind the edge's keep-alive pool that was a 502 for whichever request, of any
    tenant, came next on it. Here the exception stops, and the connection serves the next
    request like after any answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope["headers"])
        scope.setdefault("state", {})["request_id"] = request_id
        token = REQUEST_ID.set(request_id)
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = request_id
                is_json = headers.get("content-type", "").startswith("application/json")
                if is_json and "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            log.exception("%s %s failed (request %s)", scope["method"], scope["path"], request_id)
            if started:  # half an answer is out: only closing the connection ends it
                raise
            message = f"something went wrong on our side; the request id is {request_id}"
            response = JSONResponse(envelope("internal", message), status_code=500)
            await response(scope, receive, sending)
        finally:
            REQUEST_ID.reset(token)


def install_error_handlers(app: FastAPI) -> None:
    """The envelope for ApiError, validation and routing errors, and RequestContext around the
    app (call it before adding other middleware: those then see its 500s as answers)."""

    async def on_api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        body = envelope(exc.code, exc.message, **exc.extra)
        return JSONResponse(body, status_code=exc.status, headers=exc.headers)

    async def on_invalid(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else "invalid request"
        return JSONResponse(envelope("invalid_request", message), status_code=422)

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(envelope(code, str(exc.detail)), status_code=exc.status_code)

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_middleware(RequestContext)
