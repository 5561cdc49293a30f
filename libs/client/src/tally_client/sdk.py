"""A small synchronous client of Tally's HTTP API. The routes' requests and answers are
`_api`'s and the session reads `_reads`' plans, which the asynchronous client (`AsyncTally`)
shares; what is here is the blocking I/O."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Self, TypeVar

import httpx

from tally_client import _api, _reads
from tally_client._api import (
    DEFAULT_URL,
    MAX_RETRY_WAIT_S,
    RETRIES,
    STREAM_READ_TIMEOUT_S,
    Call,
    TallyError,
    log,
)
from tally_client._reads import (
    FINAL,
    Pause,
    Resume,
    StreamEvent,
    finished,
    keep_newer,
    parse_events,
    session_state,
)

__all__ = [
    "DEFAULT_URL",
    "FINAL",
    "MAX_RETRY_WAIT_S",
    "RETRIES",
    "STREAM_READ_TIMEOUT_S",
    "RetryAfter",
    "StreamEvent",
    "TallyClient",
    "TallyError",
    "finished",
    "keep_newer",
    "log",
    "parse_events",
    "session_state",
]
T = TypeVar("T")


class RetryAfter(httpx.BaseTransport):
    """A transport that sends a request again after the `Retry-After` of an answer that says
    nothing was done (`_api.retry_wait` says which), up to `retries` times while the wait is
    at most `max_wait_s`; any other answer, or a longer wait, is the caller's."""

    def __init__(
        self,
        inner: httpx.BaseTransport,
        retries: int = RETRIES,
        max_wait_s: float = MAX_RETRY_WAIT_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._inner = inner
        self._retries = retries
        self._max_wait_s = max_wait_s
        self._sleep = sleep

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for _ in range(self._retries):
            response = self._inner.handle_request(request)
            if _api.must_read_for_retry(request, response):
                response.read()
            wait = _api.retry_wait(request, response, self._max_wait_s)
            if wait is None:
                return response
            response.close()
            self._sleep(wait)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


class TallyClient:
    def __init__(
        self, url: str | None = None, api_key: str | None = None, timeout_s: float = 120.0
    ) -> None:
        base_url, headers = _api.connection(url, api_key)
        self._http = httpx.Client(
            base_url=base_url,
            headers=headers,
            timeout=timeout_s,
            transport=RetryAfter(httpx.HTTPTransport()),
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def _call(self, call: Call[T]) -> T:
        return call.decode(self._http.send(call.request(self._http)))

    def _run(self, plan: Generator[Call[Any], Any, T]) -> T:
        """A plan's requests sent one after the other; what it comes to."""
        answer: Any = None
        while True:
            try:
                call = plan.send(answer)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            answer = self._call(call)

    @contextlib.contextmanager
    def _opened(self, call: Call[None]) -> Iterator[httpx.Response]:
        """The answer of a request whose body is read as it comes (a 2xx), closed after."""
        response = self._http.send(call.request(self._http), stream=True)
        try:
            if not response.is_success:
                response.read()
                _api.decode(response, 200)
            yield response
        finally:
            response.close()

    def _states(self, plan: _reads.States) -> Iterator[dict[str, Any]]:
        """A plan's requests sent and its pauses slept, the states it gives given on."""
        answer: Any = None
        while True:
            try:
                step = plan.send(answer)
            except StopIteration:
                return
            answer = None
            if isinstance(step, Call):
                answer = self._call(step)
            elif isinstance(step, Pause):
                time.sleep(step.seconds)
            else:
                yield step

    def create_session(self, name: str = "", params: dict[str, Any] | None = None) -> str:
        return self._call(_api.create_session(name, params))

    def upload(self, session_id: str, photos: Iterable[Path]) -> dict[str, Any]:
        """Upload photos in one request: accepted jobs and per-file refusals."""
        return self._call(_api.upload(session_id, photos))

    def page(
        self, session_id: str, cursor: str | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        """One page of the session's jobs (oldest first) and its summary; its `next_cursor`
        asks for the next."""
        return self._call(_api.page(session_id, cursor, limit))

    def changes(
        self, session_id: str, since: str, limit: int | None = None, etag: str = ""
    ) -> tuple[dict[str, Any] | None, str]:
        """The jobs changed (and deleted) after version `since`, with the answer's ETag; None
        when nothing changed since the answer of `etag`. `reload` in it: `since` is too old,
        and its jobs are the first page instead; `more`: ask again from its `version`."""
        return self._call(_api.changes(session_id, since, limit, etag))

    def jobs(self, session_id: str) -> dict[str, Any]:
        """Every job of the session (oldest first), page by page, with the summary and the
        version of the first page: the changes after it (`changes`) cover any job that moved
        while the others were read."""
        return self._run(_reads.every_job(session_id))

    def _rest(
        self, session_id: str, first: dict[str, Any], jobs: dict[str, dict[str, Any]]
    ) -> dict[str, Any]:
        return self._run(_reads.rest(session_id, first, jobs))

    def result(self, job_id: str) -> dict[str, Any]:
        return self._call(_api.result(job_id))

    def cancel_session(self, session_id: str) -> dict[str, Any]:
        """Cancel every job of the session that has not finished (they turn `cancelled`)."""
        return self._call(_api.cancel_session(session_id))

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        return self._call(_api.cancel_job(job_id))

    def job(self, job_id: str) -> dict[str, Any]:
        """One job with its recent log entries."""
        return self._call(_api.job(job_id))

    def events(
        self, session_id: str, last_event_id: str | None = None, max_failures: int = 5
    ) -> Generator[StreamEvent, None, None]:
        """The session's Server-Sent Events until `done`. A cut connection is resumed with
        Last-Event-ID after the server's `retry:` delay, so nothing is lost or repeated;
        `max_failures` cuts in a row without an event in between raise the last error."""
        resume = Resume(last_event_id, max_failures)
        while True:
            try:
                with self._opened(resume.connect(session_id)) as response:
                    if response.status_code == 204:  # finished, and we had everything
                        return
                    for chunk in response.iter_bytes():
                        for event in resume.feed(chunk):
                            yield event
                            if event.event == "done":
                                return
            except httpx.TransportError as exc:
                resume.cut(exc)
            time.sleep(resume.retry_s)

    def poll(self, session_id: str, interval_s: float | None = None) -> Iterator[dict[str, Any]]:
        """The session's state each time it changes, polled at the server's interval (or
        `interval_s`), until every job is final: every page once, then only what changed (a
        delta `since` the last version, so a session of thousands of jobs costs what moved),
        all of it again when the server says its version is too old."""
        return self._states(_reads.poll(session_id, interval_s))

    def follow(self, session_id: str) -> Iterator[dict[str, Any]]:
        """The session's state (jobs and summary, as polling gives it) each time it changes,
        until every job is final: from the event stream, resumed after cuts; from polling when
        the stream cannot be had (a proxy that refuses it, repeated network failures). A
        snapshot holds the first page of a big session's jobs: the rest are read page by page
        while the stream brings their changes."""
        jobs: dict[str, dict[str, Any]] = {}
        summary: dict[str, Any] = {}
        try:
            for event in self.events(session_id):
                summary = self._run(_reads.fold(session_id, jobs, summary, event))
                yield session_state(session_id, jobs, summary)
            if not jobs:  # finished before we came: the stream answered 204 at once
                yield self.jobs(session_id)
            return
        except (TallyError, httpx.TransportError) as error:
            _reads.polling_instead(error)
        yield from self.poll(session_id)

    def export(self, session_id: str, fmt: str, out: IO[bytes]) -> int:
        """The session's export (`fmt`: `csv`, `json` for JSON Lines, or `coco`) written into
        `out` as it streams in; the number of bytes written. TallyError for an error answer
        (nothing written); httpx.RemoteProtocolError when the export broke off mid-way (what
        was written is then cut short)."""
        written = 0
        with self._opened(_api.export(session_id, fmt)) as response:
            for chunk in response.iter_bytes():
                out.write(chunk)
                written += len(chunk)
        return written

    # The webhook API (docs/integrators.md); the answers as the server gives them.

    def create_webhook(
        self, url: str, events: Iterable[str], description: str | None = None
    ) -> dict[str, Any]:
        """A webhook for these event types; its `secret` is shown this once."""
        return self._call(_api.create_webhook(url, events, description))

    def upload_model(
        self,
        path: Path,
        name: str,
        model_format: str,
        labels: Iterable[str],
        input_size: int | None = None,
    ) -> dict[str, Any]:
        """A new version of the detector `name` from an ONNX file (`tally`, `yolov8` or
        `yolov5` layout), one label per class; `validating` until Triton has run it once."""
        return self._call(_api.upload_model(path, name, model_format, labels, input_size))

    def list_models(self) -> list[dict[str, Any]]:
        """The tenant's models and the shared ones, the default first."""
        return list(self._call(_api.list_models())["models"])

    def model(self, model_id: str) -> dict[str, Any]:
        return self._call(_api.model(model_id))

    def delete_model(self, model_id: str) -> None:
        self._call(_api.delete_model(model_id))

    def list_webhooks(self) -> list[dict[str, Any]]:
        return list(self._call(_api.list_webhooks())["webhooks"])

    def webhook(self, webhook_id: str) -> dict[str, Any]:
        return self._call(_api.webhook(webhook_id))

    def update_webhook(self, webhook_id: str, **changes: Any) -> dict[str, Any]:
        """Change `url`, `events`, `enabled` or `description`."""
        return self._call(_api.update_webhook(webhook_id, changes))

    def delete_webhook(self, webhook_id: str) -> None:
        self._call(_api.delete_webhook(webhook_id))

    def rotate_webhook_secret(self, webhook_id: str) -> dict[str, Any]:
        """A new secret; the old one keeps signing too until `previous_secret_expires_at`."""
        return self._call(_api.rotate_webhook_secret(webhook_id))

    def deliveries(
        self, webhook_id: str, cursor: str | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        """A page of the webhook's deliveries and their attempts; `next_cursor` asks for the
        next."""
        return self._call(_api.deliveries(webhook_id, cursor, limit))

    def replay(self, webhook_id: str, delivery_id: str) -> None:
        """Send a delivery again (its `webhook-id` stays the same)."""
        self._call(_api.replay(webhook_id, delivery_id))
