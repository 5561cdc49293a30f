"""`AsyncTally`: the asynchronous client of Tally's HTTP API, on `httpx.AsyncClient`, with the
synchronous `TallyClient`'s methods (same names, same arguments) as coroutines and async
iterators, answering typed models. Requests, answers and session reads are `_api`'s and
`_reads`' (shared with `TallyClient`); what is here is the non-blocking I/O."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable
from pathlib import Path
from typing import IO, Any, Self, TypeVar

import httpx

from tally_client import _api, _reads
from tally_client._api import MAX_RETRY_WAIT_S, RETRIES, Call, TallyError
from tally_client._models import (
    Cancelling,
    CreatedWebhook,
    DeliveryPage,
    Job,
    JobDetail,
    JobResult,
    RegisteredModel,
    SecretRotation,
    SessionPage,
    SessionState,
    Summary,
    Upload,
    Webhook,
)
from tally_client._reads import Pause, Resume, StreamEvent, session_state

T = TypeVar("T")


class AsyncRetryAfter(httpx.AsyncBaseTransport):
    """`RetryAfter` for `httpx.AsyncClient`: a 429 or 503 that says nothing was done is sent
    again after its `Retry-After` (`_api.retry_wait`), `retries` times at most while the wait
    is at most `max_wait_s`, sleeping without blocking the event loop."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        retries: int = RETRIES,
        max_wait_s: float = MAX_RETRY_WAIT_S,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._inner = inner
        self._retries = retries
        self._max_wait_s = max_wait_s
        self._sleep = sleep

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        for _ in range(self._retries):
            response = await self._inner.handle_async_request(request)
            if _api.must_read_for_retry(request, response):
                await response.aread()
            wait = _api.retry_wait(request, response, self._max_wait_s)
            if wait is None:
                return response
            await response.aclose()
            await self._sleep(wait)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class _Typed:
    """Session states as models, each job validated once per copy: a state given for every
    event of a session of thousands of jobs costs the jobs that changed."""

    def __init__(self) -> None:
        self._jobs: dict[str, tuple[dict[str, Any], Job]] = {}

    def state(self, raw: dict[str, Any]) -> SessionState:
        held, self._jobs = self._jobs, {}
        jobs = []
        for job in raw["jobs"]:
            copy = held.get(job["job_id"])
            if copy is None or copy[0] is not job:
                copy = (job, Job.model_validate(job))
            self._jobs[job["job_id"]] = copy
            jobs.append(copy[1])
        summary = Summary.model_validate(raw["summary"]) if raw.get("summary") else None
        return SessionState.model_construct(
            session_id=raw["session_id"],
            jobs=jobs,
            summary=summary,
            version=raw.get("version"),
            poll_interval_ms=raw.get("poll_interval_ms"),
        )


class AsyncTally:
    """`async with AsyncTally(url, api_key) as tally:`; TALLY_URL and TALLY_API_KEY by default.
    `transport` replaces the network (tests); it is used as given, without the Retry-After
    wrapper the default one has."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        base_url, headers = _api.connection(url, api_key)
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers=headers,
            timeout=timeout_s,
            transport=transport or AsyncRetryAfter(httpx.AsyncHTTPTransport()),
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, call: Call[T]) -> T:
        return call.decode(await self._http.send(call.request(self._http)))

    async def _run(self, plan: Generator[Call[Any], Any, T]) -> T:
        """A plan's requests sent one after the other; what it comes to."""
        answer: Any = None
        while True:
            try:
                call = plan.send(answer)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            answer = await self._call(call)

    async def _states(self, plan: _reads.States) -> AsyncIterator[dict[str, Any]]:
        """A plan's requests sent and its pauses slept, the states it gives given on."""
        answer: Any = None
        while True:
            try:
                step = plan.send(answer)
            except StopIteration:
                return
            answer = None
            if isinstance(step, Call):
                answer = await self._call(step)
            elif isinstance(step, Pause):
                await asyncio.sleep(step.seconds)
            else:
                yield step

    @contextlib.asynccontextmanager
    async def _opened(self, call: Call[None]) -> AsyncIterator[httpx.Response]:
        """The answer of a request whose body is read as it comes (a 2xx), closed after."""
        response = await self._http.send(call.request(self._http), stream=True)
        try:
            if not response.is_success:
                await response.aread()
                _api.decode(response, 200)
            yield response
        finally:
            await response.aclose()

    async def create_session(self, name: str = "", params: dict[str, Any] | None = None) -> str:
        return await self._call(_api.create_session(name, params))

    async def upload(self, session_id: str, photos: Iterable[Path]) -> Upload:
        """Upload photos in one request: accepted jobs and per-file refusals. The files are
        read in a thread, off the event loop."""
        call = await asyncio.to_thread(_api.upload, session_id, list(photos))
        return Upload.model_validate(await self._call(call))

    async def page(
        self, session_id: str, cursor: str | None = None, limit: int | None = None
    ) -> SessionPage:
        """One page of the session's jobs (oldest first) and its summary; its `next_cursor`
        asks for the next."""
        return SessionPage.model_validate(await self._call(_api.page(session_id, cursor, limit)))

    async def changes(
        self, session_id: str, since: str, limit: int | None = None, etag: str = ""
    ) -> tuple[SessionPage | None, str]:
        """The jobs changed (and deleted) after version `since`, with the answer's ETag; None
        when nothing changed since the answer of `etag`."""
        delta, etag = await self._call(_api.changes(session_id, since, limit, etag))
        return (None if delta is None else SessionPage.model_validate(delta)), etag

    async def jobs(self, session_id: str) -> SessionState:
        """Every job of the session (oldest first), page by page, with the summary and the
        version of the first page."""
        return _Typed().state(await self._run(_reads.every_job(session_id)))

    async def result(self, job_id: str) -> JobResult:
        """The detections and counts of a completed job (409 `TallyError` until then)."""
        return JobResult.model_validate(await self._call(_api.result(job_id)))

    async def cancel_session(self, session_id: str) -> Cancelling:
        """Cancel every job of the session that has not finished (they turn `cancelled`)."""
        return Cancelling.model_validate(await self._call(_api.cancel_session(session_id)))

    async def cancel_job(self, job_id: str) -> Cancelling:
        return Cancelling.model_validate(await self._call(_api.cancel_job(job_id)))

    async def job(self, job_id: str) -> JobDetail:
        """One job with its recent log entries."""
        return JobDetail.model_validate(await self._call(_api.job(job_id)))

    async def stream_token(self, session_id: str) -> str:
        """A token that opens this session's event stream within a minute, without the key."""
        return await self._call(_api.stream_token(session_id))

    async def events(
        self,
        session_id: str,
        last_event_id: str | None = None,
        max_failures: int = 5,
        *,
        use_stream_token: bool = False,
    ) -> AsyncIterator[StreamEvent]:
        """The session's Server-Sent Events until `done`. A cut connection (a network error, or
        the server ending the stream early) is resumed with Last-Event-ID after the server's
        `retry:` delay, so nothing is lost or repeated; `max_failures` cuts in a row without an
        event in between raise the last error. `use_stream_token`: each connection shows a
        fresh stream token (`POST /v1/stream-tokens`) instead of the API key."""
        resume = Resume(last_event_id, max_failures)
        while True:
            try:
                token = await self.stream_token(session_id) if use_stream_token else None
                async with self._opened(resume.connect(session_id, token)) as response:
                    if response.status_code == 204:  # finished, and we had everything
                        return
                    async for chunk in response.aiter_bytes():
                        for event in resume.feed(chunk):
                            yield event
                            if event.event == "done":
                                return
            except httpx.TransportError as exc:
                resume.cut(exc)
            await asyncio.sleep(resume.retry_s)

    async def poll(
        self, session_id: str, interval_s: float | None = None
    ) -> AsyncIterator[SessionState]:
        """The session's state each time it changes, polled at the server's interval (or
        `interval_s`), until every job is final: every page once, then only the deltas."""
        typed = _Typed()
        async for state in self._states(_reads.poll(session_id, interval_s)):
            yield typed.state(state)

    async def follow(
        self, session_id: str, *, use_stream_token: bool = False
    ) -> AsyncIterator[SessionState]:
        """The session's state each time it changes, until every job is final: from the event
        stream, resumed after cuts; from polling when the stream cannot be had."""
        typed = _Typed()
        jobs: dict[str, dict[str, Any]] = {}
        summary: dict[str, Any] = {}
        try:
            async for event in self.events(session_id, use_stream_token=use_stream_token):
                summary = await self._run(_reads.fold(session_id, jobs, summary, event))
                yield typed.state(session_state(session_id, jobs, summary))
            if not jobs:  # finished before we came: the stream answered 204 at once
                yield await self.jobs(session_id)
            return
        except (TallyError, httpx.TransportError) as error:
            _reads.polling_instead(error)
        async for state in self.poll(session_id):
            yield state

    async def export(self, session_id: str, fmt: str, out: IO[bytes]) -> int:
        """The session's results as `fmt` (`csv`, `json` or `coco`), streamed into `out` as
        they come; the number of bytes written."""
        written = 0
        async with self._opened(_api.export(session_id, fmt)) as response:
            async for chunk in response.aiter_bytes():
                out.write(chunk)
                written += len(chunk)
        return written

    async def create_webhook(
        self, url: str, events: Iterable[str], description: str | None = None
    ) -> CreatedWebhook:
        """A webhook for these event types; its `secret` is shown this once."""
        body = await self._call(_api.create_webhook(url, events, description))
        return CreatedWebhook.model_validate(body)

    async def upload_model(
        self,
        path: Path,
        name: str,
        model_format: str,
        labels: Iterable[str],
        input_size: int | None = None,
    ) -> RegisteredModel:
        """A new version of the detector `name` from an ONNX file (`tally`, `yolov8` or
        `yolov5` layout), one label per class; `validating` until Triton has run it once."""
        body = await self._call(_api.upload_model(path, name, model_format, labels, input_size))
        return RegisteredModel.model_validate(body)

    async def list_models(self) -> list[RegisteredModel]:
        """The tenant's models and the shared ones, the default first."""
        body = await self._call(_api.list_models())
        return [RegisteredModel.model_validate(m) for m in body["models"]]

    async def model(self, model_id: str) -> RegisteredModel:
        return RegisteredModel.model_validate(await self._call(_api.model(model_id)))

    async def delete_model(self, model_id: str) -> None:
        await self._call(_api.delete_model(model_id))

    async def list_webhooks(self) -> list[Webhook]:
        body = await self._call(_api.list_webhooks())
        return [Webhook.model_validate(w) for w in body["webhooks"]]

    async def webhook(self, webhook_id: str) -> Webhook:
        return Webhook.model_validate(await self._call(_api.webhook(webhook_id)))

    async def update_webhook(self, webhook_id: str, **changes: Any) -> Webhook:
        """Change `url`, `events`, `enabled` or `description`."""
        return Webhook.model_validate(await self._call(_api.update_webhook(webhook_id, changes)))

    async def delete_webhook(self, webhook_id: str) -> None:
        await self._call(_api.delete_webhook(webhook_id))

    async def rotate_webhook_secret(self, webhook_id: str) -> SecretRotation:
        """A new secret; the old one keeps signing too until `previous_secret_expires_at`."""
        body = await self._call(_api.rotate_webhook_secret(webhook_id))
        return SecretRotation.model_validate(body)

    async def deliveries(
        self, webhook_id: str, cursor: str | None = None, limit: int | None = None
    ) -> DeliveryPage:
        """A page of the webhook's deliveries and their attempts; `next_cursor` asks for the
        next."""
        body = await self._call(_api.deliveries(webhook_id, cursor, limit))
        return DeliveryPage.model_validate(body)

    async def replay(self, webhook_id: str, delivery_id: str) -> None:
        """Send a delivery again (its `webhook-id` stays the same)."""
        await self._call(_api.replay(webhook_id, delivery_id))
