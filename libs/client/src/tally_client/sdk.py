"""A small synchronous client of Tally's HTTP API."""

from __future__ import annotations

import json
import logging
import mimetypes
import os
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Self

import httpx

from tally_client.sse import SSEParser

DEFAULT_URL = "http://127.0.0.1:8080"
# A job in one of these never changes again: tally_contracts.statuses.FINAL, which the SDK does
# not import (it would pull protobuf into every client); a test keeps the two the same.
FINAL = frozenset({"completed", "failed", "cancelled"})
# A stream that has been silent this long is dead: the server sends a heartbeat every 15 s.
STREAM_READ_TIMEOUT_S = 45.0

# A 429 (a rate limit) or 503 (busy, unavailable) says when to come back: the client waits that
# long and sends the request again, so many times at most, when the wait is this short at most
# (a quota's "until midnight" is an error for the caller, not a wait).
RETRIES = 3
MAX_RETRY_WAIT_S = 30.0

log = logging.getLogger("tally_client")


class RetryAfter(httpx.BaseTransport):
    """A transport that sends a request again after the `Retry-After` of an answer that says
    nothing was done: a 429 (a limit refused it before it ran), a 503 to a GET (no service took
    it), or a 503 `busy` to an upload (no photo was stored; a 503 of the edge to a POST may come
    after the service acted, so it is the caller's). Up to `retries` times while the wait is at
    most `max_wait_s`; any other answer, or a longer wait, is the caller's."""

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
            wait = _retry_after(request, response)
            if wait is None or wait > self._max_wait_s:
                return response
            response.close()
            log.info(
                "%s %s: %d, again in %.0f s",
                request.method,
                request.url.path,
                response.status_code,
                wait,
            )
            self._sleep(wait)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


def _retry_after(request: httpx.Request, response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    if response.status_code not in (429, 503) or not value.isdigit():
        return None
    if response.status_code == 503 and request.method not in ("GET", "HEAD"):
        response.read()
        try:
            code = response.json().get("error", {}).get("code")
        except ValueError:
            return None
        if code != "busy":
            return None
    return float(value)


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One Server-Sent Event of a session: `snapshot`, `job`, `summary` or `done`."""

    id: str
    event: str
    data: dict[str, Any]


def parse_events(chunks: Iterable[bytes]) -> Iterator[StreamEvent | int]:
    """An event stream's events, its bytes fed in whatever pieces they come, and the server's
    `retry:` (in ms) as an int each time it changes. Comments (heartbeats) are skipped; a
    frame cut off before its blank line is not yielded."""
    parser = SSEParser()
    for chunk in chunks:
        retry = parser.retry_ms
        frames = parser.feed(chunk)
        if parser.retry_ms is not None and parser.retry_ms != retry:
            yield parser.retry_ms
        for frame in frames:
            yield StreamEvent(frame.id or "", frame.event, json.loads(frame.data))


def session_state(
    session_id: str, jobs: dict[str, dict[str, Any]], summary: dict[str, Any]
) -> dict[str, Any]:
    ordered = sorted(jobs.values(), key=lambda j: (j.get("created_at") or "", j["job_id"]))
    return {"session_id": session_id, "jobs": ordered, "summary": summary}


def keep_newer(jobs: dict[str, dict[str, Any]], job: dict[str, Any]) -> None:
    """Put `job` in `jobs` unless the copy there is newer: pages, deltas and stream events may
    bring one job's states in any order, and the higher `revision` is the later. A copy
    without one (read from the system of record) tells nothing, so the last one read stays."""
    held = jobs.get(job["job_id"])
    old, new = (held or {}).get("revision"), job.get("revision")
    if old is None or new is None or new >= old:
        jobs[job["job_id"]] = job


def finished(summary: dict[str, Any]) -> bool:
    """Every job of the session has finished (and it has some)."""
    return (
        bool(summary.get("total")) and not summary.get("queued") and not summary.get("processing")
    )


class TallyError(RuntimeError):
    def __init__(self, status: int, code: str, message: str, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.body = body


class TallyClient:
    def __init__(
        self, url: str | None = None, api_key: str | None = None, timeout_s: float = 120.0
    ) -> None:
        key = api_key or os.environ.get("TALLY_API_KEY")
        if not key:
            raise ValueError("no API key: set TALLY_API_KEY (tally admin create-tenant makes one)")
        self._http = httpx.Client(
            base_url=url or os.environ.get("TALLY_URL", DEFAULT_URL),
            headers={"Authorization": f"Bearer {key}"},
            timeout=timeout_s,
            transport=RetryAfter(httpx.HTTPTransport()),
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def _json(self, response: httpx.Response, *accepted: int) -> dict[str, Any]:
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

    def create_session(self, name: str = "", params: dict[str, Any] | None = None) -> str:
        body = self._json(
            self._http.post("/v1/sessions", json={"name": name, "params": params or {}}), 201
        )
        return str(body["session_id"])

    def upload(self, session_id: str, photos: Iterable[Path]) -> dict[str, Any]:
        """Upload photos in one request: accepted jobs and per-file refusals."""
        files = [
            ("file", (p.name, p.read_bytes(), mimetypes.guess_type(p.name)[0] or "image/jpeg"))
            for p in photos
        ]
        response = self._http.post(f"/v1/sessions/{session_id}/photos", files=files)
        if 400 <= response.status_code < 500 and "rejected" in response.json():
            return {"jobs": [], "rejected": response.json()["rejected"]}
        return self._json(response, 202)

    def page(
        self, session_id: str, cursor: str | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        """One page of the session's jobs (oldest first) and its summary; its `next_cursor`
        asks for the next."""
        params: dict[str, str | int] = {"cursor": cursor} if cursor else {}
        if limit is not None:
            params["limit"] = limit
        return self._json(self._http.get(f"/v1/sessions/{session_id}/jobs", params=params), 200)

    def changes(
        self, session_id: str, since: str, limit: int | None = None, etag: str = ""
    ) -> tuple[dict[str, Any] | None, str]:
        """The jobs changed (and deleted) after version `since`, with the answer's ETag; None
        when nothing changed since the answer of `etag`. `reload` in it: `since` is too old,
        and its jobs are the first page instead; `more`: ask again from its `version`."""
        params: dict[str, str | int] = {"since": since}
        if limit is not None:
            params["limit"] = limit
        response = self._http.get(
            f"/v1/sessions/{session_id}/jobs",
            params=params,
            headers={"If-None-Match": etag} if etag else {},
        )
        if response.status_code == 304:
            return None, etag
        return self._json(response, 200), response.headers.get("etag", "")

    def jobs(self, session_id: str) -> dict[str, Any]:
        """Every job of the session (oldest first), page by page, with the summary and the
        version of the first page: the changes after it (`changes`) cover any job that moved
        while the others were read."""
        state = self.page(session_id)
        return self._rest(session_id, state, {j["job_id"]: j for j in state["jobs"]})

    def _rest(
        self, session_id: str, first: dict[str, Any], jobs: dict[str, dict[str, Any]]
    ) -> dict[str, Any]:
        """The session's jobs from a first page (or snapshot) on: the pages after it, merged
        into `jobs` (which has the first page's unless empty)."""
        for job in first["jobs"]:
            keep_newer(jobs, job)
        cursor, last = first.get("next_cursor"), first
        while cursor:
            last = self.page(session_id, cursor)
            for job in last["jobs"]:
                keep_newer(jobs, job)
            cursor = last["next_cursor"]
        return session_state(session_id, jobs, last["summary"]) | {
            "version": first.get("version"),
            "poll_interval_ms": last.get("poll_interval_ms"),
        }

    def result(self, job_id: str) -> dict[str, Any]:
        return self._json(self._http.get(f"/v1/jobs/{job_id}/result"), 200)

    def cancel_session(self, session_id: str) -> dict[str, Any]:
        """Cancel every job of the session that has not finished (they turn `cancelled`)."""
        return self._json(self._http.post(f"/v1/sessions/{session_id}/cancel"), 202)

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        return self._json(self._http.post(f"/v1/jobs/{job_id}/cancel"), 202)

    def job(self, job_id: str) -> dict[str, Any]:
        """One job with its recent log entries."""
        return self._json(self._http.get(f"/v1/jobs/{job_id}"), 200)

    def events(
        self, session_id: str, last_event_id: str | None = None, max_failures: int = 5
    ) -> Generator[StreamEvent, None, None]:
        """The session's Server-Sent Events until `done`. A cut connection is resumed with
        Last-Event-ID after the server's `retry:` delay, so nothing is lost or repeated;
        `max_failures` cuts in a row without an event in between raise the last error."""
        retry_s, failures = 3.0, 0
        timeout = httpx.Timeout(10.0, read=STREAM_READ_TIMEOUT_S)
        while True:
            headers = {"Accept": "text/event-stream"}
            if last_event_id:
                headers["Last-Event-ID"] = last_event_id
            try:
                with self._http.stream(
                    "GET", f"/v1/sessions/{session_id}/events", headers=headers, timeout=timeout
                ) as response:
                    if response.status_code == 204:  # finished, and we had everything
                        return
                    if response.status_code != 200:
                        response.read()
                        self._json(response, 200)
                    for item in parse_events(response.iter_bytes()):
                        if isinstance(item, int):
                            retry_s = item / 1000
                            continue
                        failures, last_event_id = 0, item.id
                        yield item
                        if item.event == "done":
                            return
            except httpx.TransportError as exc:
                failures += 1
                if failures >= max_failures:
                    raise
                log.info("event stream cut (%s); resuming in %.1f s", exc, retry_s)
            time.sleep(retry_s)

    def poll(self, session_id: str, interval_s: float | None = None) -> Iterator[dict[str, Any]]:
        """The session's state each time it changes, polled at the server's interval (or
        `interval_s`), until every job is final: every page once, then only what changed (a
        delta `since` the last version, so a session of thousands of jobs costs what moved),
        all of it again when the server says its version is too old."""
        state = self.jobs(session_id)
        jobs = {j["job_id"]: j for j in state["jobs"]}
        summary, version, etag = state["summary"], state["version"], ""
        every_ms = state["poll_interval_ms"]
        yield state
        while not finished(summary):
            time.sleep(interval_s if interval_s is not None else every_ms / 1000)
            more = True
            while more:
                if version is None:  # read from the system of record: no deltas, all again
                    state, more = self.jobs(session_id), False
                    jobs = {j["job_id"]: j for j in state["jobs"]}
                else:
                    delta, etag = self.changes(session_id, version, etag=etag)
                    if delta is None:
                        break
                    state, more = delta, bool(delta.get("more"))
                    if delta.get("reload"):  # too old: the delta is a first page
                        state = self._rest(session_id, delta, {})
                        jobs = {j["job_id"]: j for j in state["jobs"]}
                    else:
                        for job in delta["jobs"]:
                            keep_newer(jobs, job)
                        for job_id in delta["deleted"]:
                            jobs.pop(job_id, None)
                summary, version = state["summary"], state["version"]
                every_ms = state["poll_interval_ms"] or every_ms
                yield session_state(session_id, jobs, summary)

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
                if event.event == "snapshot":
                    jobs = {j["job_id"]: j for j in event.data["jobs"]}
                    self._rest(session_id, event.data, jobs)  # the later pages, into jobs
                    summary = event.data["summary"]
                elif event.event == "job":
                    keep_newer(jobs, event.data)
                elif event.event == "deleted":
                    jobs.pop(event.data["job_id"], None)
                else:
                    summary = event.data["summary"]
                yield session_state(session_id, jobs, summary)
            if not jobs:  # finished before we came: the stream answered 204 at once
                yield self.jobs(session_id)
            return
        except TallyError as error:
            if error.status in (401, 403, 404):
                raise
            log.warning("no event stream (%s): polling instead", error)
        except httpx.TransportError as error:
            log.warning("no event stream (%s): polling instead", error)
        yield from self.poll(session_id)

    def export(self, session_id: str, fmt: str, out: BinaryIO) -> int:
        """The session's export (`fmt`: `csv`, `json` for JSON Lines, or `coco`) written into
        `out` as it streams in; the number of bytes written. TallyError for an error answer
        (nothing written); httpx.RemoteProtocolError when the export broke off mid-way (what
        was written is then cut short)."""
        path = f"/v1/sessions/{session_id}/export"
        with self._http.stream("GET", path, params={"format": fmt}) as response:
            if response.status_code != 200:
                response.read()
                self._json(response, 200)
            written = 0
            for chunk in response.iter_bytes():
                out.write(chunk)
                written += len(chunk)
        return written
