"""Tally's HTTP API as requests to build and answers to decode, with no I/O: the one definition
of each route's shape that the synchronous client (sdk.py) and the asynchronous one (_async.py)
both send, each through its own httpx client."""

from __future__ import annotations

import json
import logging
import mimetypes
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

DEFAULT_URL = "http://127.0.0.1:8080"
# A stream that has been silent this long is dead: the server sends a heartbeat every 15 s.
STREAM_READ_TIMEOUT_S = 45.0
STREAM_TIMEOUT = httpx.Timeout(10.0, read=STREAM_READ_TIMEOUT_S)

# A 429 (a rate limit) or 503 (busy, unavailable) says when to come back: the client waits that
# long and sends the request again, so many times at most, when the wait is this short at most
# (a quota's "until midnight" is an error for the caller, not a wait).
RETRIES = 3
MAX_RETRY_WAIT_S = 30.0

log = logging.getLogger("tally_client")
T = TypeVar("T")
Params = Mapping[str, str | int]
Files = list[tuple[str, tuple[str, bytes, str]]]


def _segment(value: str) -> str:
    """An id as one path segment: `../jobs` cannot reach another route."""
    return quote(str(value), safe="")


class TallyError(RuntimeError):
    def __init__(self, status: int, code: str, message: str, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.body = body


def connection(url: str | None, api_key: str | None) -> tuple[str, dict[str, str]]:
    """The base URL and the headers of a client: the arguments, else TALLY_URL and
    TALLY_API_KEY."""
    key = api_key or os.environ.get("TALLY_API_KEY")
    if not key:
        raise ValueError("no API key: set TALLY_API_KEY (tally admin create-tenant makes one)")
    return url or os.environ.get("TALLY_URL", DEFAULT_URL), {"Authorization": f"Bearer {key}"}


def decode(response: httpx.Response, *accepted: int) -> dict[str, Any]:
    """The JSON body of an answer with one of the `accepted` statuses; any other raises
    TallyError with the envelope's code and message."""
    body: dict[str, Any] = response.json() if response.content else {}
    if response.status_code not in accepted:
        error = body.get("error", {})
        raise TallyError(
            response.status_code,
            error.get("code", "http_error"),
            error.get("message", response.text),
            body,
        )
    return body


def expect(*accepted: int) -> Callable[[httpx.Response], dict[str, Any]]:
    return lambda response: decode(response, *accepted)


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request of the API and how its answer reads. `anonymous`: sent without the API key
    (a stream opened with a stream token shows only the token)."""

    method: str
    path: str
    decode: Callable[[httpx.Response], T]
    params: Params | None = None
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    files: Files | None = None
    data: dict[str, str] | None = None  # form fields, beside `files`
    timeout: httpx.Timeout | None = None
    anonymous: bool = False

    def request(self, http: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        request = http.build_request(
            self.method,
            self.path,
            params=self.params,
            json=self.json,
            headers=self.headers,
            files=self.files,
            data=self.data,
            timeout=self.timeout or httpx.USE_CLIENT_DEFAULT,
        )
        if self.anonymous:
            del request.headers["Authorization"]
        return request


def must_read_for_retry(request: httpx.Request, response: httpx.Response) -> bool:
    """Whether `retry_wait` needs the answer's body: a 503 to a write is retried only when it
    says `busy`."""
    return response.status_code == 503 and request.method not in ("GET", "HEAD")


def retry_wait(request: httpx.Request, response: httpx.Response, max_wait_s: float) -> float | None:
    """How long to wait before sending `request` again, or None when its answer is the
    caller's: a 429 (a limit refused it before it ran), a 503 to a GET (no service took it), or
    a 503 `busy` to an upload (no photo was stored; a 503 of the edge to a POST may come after
    the service acted). The body must have been read when `must_read_for_retry` says so."""
    value = response.headers.get("retry-after", "")
    if response.status_code not in (429, 503) or not value.isdigit():
        return None
    if must_read_for_retry(request, response):
        try:
            code = response.json().get("error", {}).get("code")
        except ValueError:
            return None
        if code != "busy":
            return None
    wait = float(value)
    if wait > max_wait_s:
        return None
    log.info(
        "%s %s: %d, again in %.0f s", request.method, request.url.path, response.status_code, wait
    )
    return wait


# The routes, in the order of docs/api.md.


def create_session(name: str, params: dict[str, Any] | None) -> Call[str]:
    return Call(
        "POST",
        "/v1/sessions",
        lambda response: str(decode(response, 201)["session_id"]),
        json={"name": name, "params": params or {}},
    )


def _uploaded(response: httpx.Response) -> dict[str, Any]:
    """Accepted jobs and per-file refusals; a request whose every file was refused is a 4xx
    with the same lists, read as an answer with no job."""
    if 400 <= response.status_code < 500 and response.content:
        body = response.json()
        if "rejected" in body:
            return {"jobs": [], "rejected": body["rejected"]}
    return decode(response, 202)


def upload(session_id: str, photos: Iterable[Path]) -> Call[dict[str, Any]]:
    """Photos in one request (their bytes are read here)."""
    files = [
        ("file", (p.name, p.read_bytes(), mimetypes.guess_type(p.name)[0] or "image/jpeg"))
        for p in photos
    ]
    return Call("POST", f"/v1/sessions/{_segment(session_id)}/photos", _uploaded, files=files)


def _paging(cursor: str | None, limit: int | None) -> dict[str, str | int]:
    params: dict[str, str | int] = {"cursor": cursor} if cursor else {}
    if limit is not None:
        params["limit"] = limit
    return params


def page(session_id: str, cursor: str | None, limit: int | None) -> Call[dict[str, Any]]:
    params = _paging(cursor, limit)
    return Call("GET", f"/v1/sessions/{_segment(session_id)}/jobs", expect(200), params=params)


def _changed(etag: str) -> Callable[[httpx.Response], tuple[dict[str, Any] | None, str]]:
    def read(response: httpx.Response) -> tuple[dict[str, Any] | None, str]:
        if response.status_code == 304:
            return None, etag
        return decode(response, 200), response.headers.get("etag", "")

    return read


def changes(
    session_id: str, since: str, limit: int | None, etag: str
) -> Call[tuple[dict[str, Any] | None, str]]:
    params: dict[str, str | int] = {"since": since}
    if limit is not None:
        params["limit"] = limit
    return Call(
        "GET",
        f"/v1/sessions/{_segment(session_id)}/jobs",
        _changed(etag),
        params=params,
        headers={"If-None-Match": etag} if etag else {},
    )


def stream_token(session_id: str) -> Call[str]:
    return Call(
        "POST",
        "/v1/stream-tokens",
        lambda response: str(decode(response, 201)["token"]),
        json={"session_id": session_id},
    )


def events(session_id: str, last_event_id: str | None, token: str | None) -> Call[None]:
    """The session's event stream, opened (its answer is read by the caller, as it comes):
    resumed after `last_event_id`, with a stream token instead of the key when one is given."""
    headers = {"Accept": "text/event-stream"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    return Call(
        "GET",
        f"/v1/sessions/{_segment(session_id)}/events",
        lambda response: None,
        params={"access_token": token} if token else None,
        headers=headers,
        timeout=STREAM_TIMEOUT,
        anonymous=token is not None,
    )


def export(session_id: str, fmt: str) -> Call[None]:
    """The session's results as a file (`csv`, `json` or `coco`), streamed by the caller."""
    return Call(
        "GET", f"/v1/sessions/{_segment(session_id)}/export", lambda r: None, params={"format": fmt}
    )


def job(job_id: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/v1/jobs/{_segment(job_id)}", expect(200))


def result(job_id: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/v1/jobs/{_segment(job_id)}/result", expect(200))


def cancel_job(job_id: str) -> Call[dict[str, Any]]:
    return Call("POST", f"/v1/jobs/{_segment(job_id)}/cancel", expect(202))


def cancel_session(session_id: str) -> Call[dict[str, Any]]:
    return Call("POST", f"/v1/sessions/{_segment(session_id)}/cancel", expect(202))


def create_webhook(
    url: str, events: Iterable[str], description: str | None
) -> Call[dict[str, Any]]:
    body: dict[str, Any] = {"url": url, "events": list(events)}
    if description is not None:
        body["description"] = description
    return Call("POST", "/v1/webhooks", expect(201), json=body)


def list_webhooks() -> Call[dict[str, Any]]:
    return Call("GET", "/v1/webhooks", expect(200))


def webhook(webhook_id: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/v1/webhooks/{_segment(webhook_id)}", expect(200))


def update_webhook(webhook_id: str, changes: dict[str, Any]) -> Call[dict[str, Any]]:
    return Call("PATCH", f"/v1/webhooks/{_segment(webhook_id)}", expect(200), json=changes)


def _deleted(response: httpx.Response) -> None:
    decode(response, 204)


def delete_webhook(webhook_id: str) -> Call[None]:
    return Call("DELETE", f"/v1/webhooks/{_segment(webhook_id)}", _deleted)


def rotate_webhook_secret(webhook_id: str) -> Call[dict[str, Any]]:
    return Call("POST", f"/v1/webhooks/{_segment(webhook_id)}/rotate-secret", expect(200))


def deliveries(webhook_id: str, cursor: str | None, limit: int | None) -> Call[dict[str, Any]]:
    params = _paging(cursor, limit)
    return Call(
        "GET", f"/v1/webhooks/{_segment(webhook_id)}/deliveries", expect(200), params=params
    )


def replay(webhook_id: str, delivery_id: str) -> Call[dict[str, Any]]:
    return Call(
        "POST",
        f"/v1/webhooks/{_segment(webhook_id)}/deliveries/{_segment(delivery_id)}/replay",
        expect(202),
    )


def upload_model(
    path: Path, name: str, model_format: str, labels: Iterable[str], input_size: int | None
) -> Call[dict[str, Any]]:
    """A new version of the model `name` (an ONNX file; its bytes are read here)."""
    data = {"name": name, "format": model_format, "labels": json.dumps(list(labels))}
    if input_size is not None:
        data["input_size"] = str(input_size)
    files = [("file", (path.name, path.read_bytes(), "application/octet-stream"))]
    return Call("POST", "/v1/models", expect(201), files=files, data=data)


def list_models() -> Call[dict[str, Any]]:
    return Call("GET", "/v1/models", expect(200))


def model(model_id: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/v1/models/{_segment(model_id)}", expect(200))


def delete_model(model_id: str) -> Call[None]:
    return Call("DELETE", f"/v1/models/{_segment(model_id)}", _deleted)
