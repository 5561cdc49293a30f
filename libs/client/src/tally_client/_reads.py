"""How the clients read a session, with no I/O: the pages and deltas of polling and the event
stream's resume, written once as plans (generators that yield the requests they need and get
back the decoded answers) that the synchronous and the asynchronous client each run with their
own I/O."""

from __future__ import annotations

import json
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from tally_client import _api
from tally_client._api import Call, TallyError, log
from tally_client.sse import SSEParser

# A job in one of these never changes again: tally_contracts.statuses.FINAL, which the SDK does
# not import (it would pull protobuf into every client); a test keeps the two the same.
FINAL = frozenset({"completed", "failed", "cancelled"})
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Pause:
    """A plan's wait before its next request."""

    seconds: float


# What a plan yields: a request (answered with its decoded answer), a pause, or a session
# state for the caller.
Step = Call[Any] | Pause | dict[str, Any]
Plan = Generator[Call[Any], Any, T]
States = Generator[Step, Any, None]


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One Server-Sent Event of a session: `snapshot`, `job`, `summary`, `deleted` or `done`."""

    id: str
    event: str
    data: dict[str, Any]


class EventReader:
    """A session's events out of its stream's bytes, fed in whatever pieces they come, and the
    server's `retry:` (in ms) as an int each time it changes."""

    def __init__(self) -> None:
        self._parser = SSEParser()

    def feed(self, chunk: bytes) -> list[StreamEvent | int]:
        retry = self._parser.retry_ms
        frames = self._parser.feed(chunk)
        out: list[StreamEvent | int] = []
        if self._parser.retry_ms is not None and self._parser.retry_ms != retry:
            out.append(self._parser.retry_ms)
        out.extend(StreamEvent(f.id or "", f.event, json.loads(f.data)) for f in frames)
        return out


def parse_events(chunks: Iterable[bytes]) -> Iterator[StreamEvent | int]:
    """An event stream's events and `retry:` changes. Comments (heartbeats) are skipped; a
    frame cut off before its blank line is not yielded."""
    reader = EventReader()
    for chunk in chunks:
        yield from reader.feed(chunk)


class Resume:
    """Where a session's event stream stands across connections: the last event given (sent
    back as Last-Event-ID, so nothing is lost or repeated), the server's `retry:` delay, and
    the cuts in a row without an event in between (`max_failures` of them raise the last)."""

    def __init__(self, last_event_id: str | None, max_failures: int) -> None:
        self.last_event_id = last_event_id
        self.retry_s = 3.0
        self._failures = 0
        self._max_failures = max_failures
        self._reader = EventReader()

    def connect(self, session_id: str, token: str | None = None) -> Call[None]:
        """The request of the next connection, whose bytes are read afresh."""
        self._reader = EventReader()
        return _api.events(session_id, self.last_event_id, token)

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        """The events of a piece of the stream, taken as given."""
        events = []
        for item in self._reader.feed(chunk):
            if isinstance(item, int):
                self.retry_s = item / 1000
            else:
                self._failures, self.last_event_id = 0, item.id
                events.append(item)
        return events

    def cut(self, error: httpx.TransportError) -> None:
        self._failures += 1
        if self._failures >= self._max_failures:
            raise error
        log.info("event stream cut (%s); resuming in %.1f s", error, self.retry_s)


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


def rest(
    session_id: str, first: dict[str, Any], jobs: dict[str, dict[str, Any]]
) -> Plan[dict[str, Any]]:
    """The session's jobs from a first page (or snapshot) on: the pages after it, merged
    into `jobs` (which has the first page's unless empty)."""
    for job in first["jobs"]:
        keep_newer(jobs, job)
    cursor, last = first.get("next_cursor"), first
    while cursor:
        last = yield _api.page(session_id, cursor, None)
        for job in last["jobs"]:
            keep_newer(jobs, job)
        cursor = last["next_cursor"]
    return session_state(session_id, jobs, last["summary"]) | {
        "version": first.get("version"),
        "poll_interval_ms": last.get("poll_interval_ms"),
    }


def every_job(session_id: str) -> Plan[dict[str, Any]]:
    """Every job of the session (oldest first), page by page, with the summary and the
    version of the first page: the changes after it cover any job that moved while the others
    were read."""
    first = yield _api.page(session_id, None, None)
    return (yield from rest(session_id, first, {j["job_id"]: j for j in first["jobs"]}))


def poll(session_id: str, interval_s: float | None) -> States:
    """The session's state each time it changes, polled at the server's interval (or
    `interval_s`), until every job is final: every page once, then only what changed (a
    delta `since` the last version, so a session of thousands of jobs costs what moved),
    all of it again when the server says its version is too old."""
    state = yield from every_job(session_id)
    jobs = {j["job_id"]: j for j in state["jobs"]}
    summary, version, etag = state["summary"], state["version"], ""
    every_ms = state["poll_interval_ms"]
    yield state
    while not finished(summary):
        yield Pause(interval_s if interval_s is not None else every_ms / 1000)
        more = True
        while more:
            if version is None:  # read from the system of record: no deltas, all again
                state, more = (yield from every_job(session_id)), False
                jobs = {j["job_id"]: j for j in state["jobs"]}
            else:
                delta, etag = yield _api.changes(session_id, version, None, etag)
                if delta is None:
                    break
                state, more = delta, bool(delta.get("more"))
                if delta.get("reload"):  # too old: the delta is a first page
                    state = yield from rest(session_id, delta, {})
                    jobs = {j["job_id"]: j for j in state["jobs"]}
                else:
                    for job in delta["jobs"]:
                        keep_newer(jobs, job)
                    for job_id in delta["deleted"]:
                        jobs.pop(job_id, None)
            summary, version = state["summary"], state["version"]
            every_ms = state["poll_interval_ms"] or every_ms
            yield session_state(session_id, jobs, summary)


def fold(
    session_id: str, jobs: dict[str, dict[str, Any]], summary: dict[str, Any], event: StreamEvent
) -> Plan[dict[str, Any]]:
    """One stream event folded into `jobs`; the summary after it. A snapshot holds the first
    page of a big session's jobs: the rest are read page by page while the stream brings
    their changes."""
    if event.event == "snapshot":
        jobs.clear()
        jobs.update({j["job_id"]: j for j in event.data["jobs"]})
        yield from rest(session_id, event.data, jobs)  # the later pages, into jobs
        return dict(event.data["summary"])
    if event.event == "job":
        keep_newer(jobs, event.data)
    elif event.event == "deleted":
        jobs.pop(event.data["job_id"], None)
    else:
        return dict(event.data["summary"])
    return summary


def polling_instead(error: TallyError | httpx.TransportError) -> None:
    """Following falls back to polling when the stream cannot be had (a proxy that refuses it,
    repeated network failures); a refusal of the caller or the session is the caller's."""
    if isinstance(error, TallyError) and error.status in (401, 403, 404):
        raise error
    log.warning("no event stream (%s): polling instead", error)
