"""AsyncTally: the requests it sends, the typed answers it reads, its waits after Retry-After,
and its event stream resumed after a cut. Against fakes of the gateway's contract in
httpx.MockTransport (the real gateway is tests/e2e/test_async_sdk.py's)."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tally_client import (
    AsyncRetryAfter,
    AsyncTally,
    JobResult,
    SessionState,
    StreamEvent,
    TallyError,
)

Handler = Callable[[httpx.Request], httpx.Response]
URL = "https://example.org/tally"
SUMMARY = {"total": 2, "queued": 0, "processing": 1, "completed": 1, "failed": 0, "cancelled": 0}


def _job(n: int, status: str = "processing", revision: int = 1) -> dict[str, Any]:
    return {
        "job_id": f"j{n}",
        "session_id": "s",
        "filename": f"{n}.jpg",
        "status": status,
        "created_at": f"2026-12-01T10:00:0{n}+00:00",
        "revision": revision,
    }


def _tally(serve: Handler, waits: list[float] | None = None) -> AsyncTally:
    async def sleep(seconds: float) -> None:
        (waits if waits is not None else []).append(seconds)

    transport = AsyncRetryAfter(httpx.MockTransport(serve), sleep=sleep)
    return AsyncTally("http://tally", "tly_test", transport=transport)


class Recorder:
    """Answers each request with the next of `answers`, keeping what was sent."""

    def __init__(self, *answers: httpx.Response) -> None:
        self.answers = list(answers)
        self.sent: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return self.answers.pop(0)

    @property
    def last(self) -> httpx.Request:
        return self.sent[-1]

    def body(self) -> Any:
        return json.loads(self.last.content)


async def test_requests_carry_the_key_and_the_contracts_paths_and_bodies(tmp_path: Path) -> None:
    photo = tmp_path / "tray.png"
    photo.write_bytes(b"\x89PNG...")
    recorder = Recorder(
        httpx.Response(201, json={"session_id": "s1", "name": "bench 4"}),
        httpx.Response(
            202,
            json={
                "session_id": "s1",
                "jobs": [{"job_id": "j1", "image_id": "i1", "filename": "tray.png",
                          "status": "queued", "planned_slices": 12}],
                "planned_slices": 12,
                "rejected": [],
            },
        ),
        httpx.Response(202, json={"session_id": "s1", "status": "cancelling", "jobs": 1}),
        httpx.Response(202, json={"job_id": "j1", "status": "cancelling"}),
    )  # fmt: skip
    async with _tally(recorder) as tally:
        assert await tally.create_session("bench 4", {"slice_size": 640}) == "s1"
        assert recorder.last.method == "POST"
        assert recorder.last.url.path == "/v1/sessions"
        assert recorder.last.headers["authorization"] == "Bearer tly_test"
        assert recorder.body() == {"name": "bench 4", "params": {"slice_size": 640}}

        upload = await tally.upload("s1", [photo])
        assert recorder.last.url.path == "/v1/sessions/s1/photos"
        assert b'name="file"; filename="tray.png"' in recorder.last.content
        assert b"Content-Type: image/png" in recorder.last.content
        assert upload.jobs[0].planned_slices == 12
        assert upload.rejected == []

        assert (await tally.cancel_session("s1")).jobs == 1
        assert recorder.last.url.path == "/v1/sessions/s1/cancel"
        assert (await tally.cancel_job("j1")).status == "cancelling"
        assert recorder.last.url.path == "/v1/jobs/j1/cancel"


async def test_an_upload_whose_every_file_was_refused_reads_as_no_job(tmp_path: Path) -> None:
    photo = tmp_path / "broken.jpg"
    photo.write_bytes(b"not a photo")
    refused = {
        "error": {"code": "corrupt_image", "message": "…"},
        "jobs": [],
        "rejected": [{"filename": "broken.jpg", "code": "corrupt_image", "message": "…"}],
    }
    async with _tally(Recorder(httpx.Response(422, json=refused))) as tally:
        upload = await tally.upload("s1", [photo])
    assert upload.jobs == []
    assert [(r.filename, r.code) for r in upload.rejected] == [("broken.jpg", "corrupt_image")]


async def test_reads_answer_typed_models() -> None:
    result = {
        "job_id": "j1",
        "width": 4000,
        "height": 3000,
        "counts": {"seedling": 2},
        "detections": [
            {"bbox": [1, 2, 30, 40], "score": 0.9, "label": "seedling"},
            {"bbox": [5, 6, 70, 80], "score": 0.8, "label": "seedling"},
        ],
        "added_later": True,  # a field the server adds is kept, not refused
    }
    detail = _job(1, "completed") | {"logs": [{"at": "2026-12-01T10:00:05+00:00",
                                                "event": "completed", "source": "orchestrator",
                                                "sequence": 7}]}  # fmt: skip
    page = {"session_id": "s", "version": "1.4", "jobs": [_job(1)], "summary": SUMMARY,
            "last_updated": None, "poll_interval_ms": 2000, "next_cursor": "j1"}  # fmt: skip
    recorder = Recorder(
        httpx.Response(200, json=result),
        httpx.Response(200, json=detail),
        httpx.Response(200, json=page),
        httpx.Response(
            200,
            json=page | {"since": "1.4", "deleted": ["j0"]},
            headers={"ETag": "e2"},
        ),
        httpx.Response(304),
    )
    async with _tally(recorder) as tally:
        typed = await tally.result("j1")
        assert isinstance(typed, JobResult)
        assert typed.counts == {"seedling": 2}
        assert typed.detections[1].bbox == [5.0, 6.0, 70.0, 80.0]
        assert typed.model_extra == {"added_later": True}
        assert recorder.last.url.path == "/v1/jobs/j1/result"

        job = await tally.job("j1")
        assert job.logs[0].sequence == 7
        assert job.final

        first = await tally.page("s", cursor="j0", limit=50)
        assert dict(recorder.last.url.params) == {"cursor": "j0", "limit": "50"}
        assert first.next_cursor == "j1"
        assert first.summary.processing == 1

        delta, etag = await tally.changes("s", "1.4")
        assert dict(recorder.last.url.params) == {"since": "1.4"}
        assert delta is not None
        assert delta.deleted == ["j0"]
        assert etag == "e2"
        assert await tally.changes("s", "1.4", etag=etag) == (None, "e2")
        assert recorder.last.headers["if-none-match"] == "e2"


async def test_an_error_is_raised_with_the_envelopes_code() -> None:
    envelope = {"error": {"code": "not_finished", "message": "job j1 is processing"}}
    async with _tally(Recorder(httpx.Response(409, json=envelope))) as tally:
        with pytest.raises(TallyError) as refused:
            await tally.result("j1")
    assert (refused.value.status, refused.value.code) == (409, "not_finished")
    assert "job j1 is processing" in str(refused.value)


async def test_a_retry_after_is_waited_out_and_the_request_sent_again() -> None:
    waits: list[float] = []
    recorder = Recorder(
        httpx.Response(429, headers={"Retry-After": "2"}, json={"error": {"code": "rate_limited"}}),
        httpx.Response(503, headers={"Retry-After": "1"}),
        httpx.Response(200, json={"webhooks": []}),
    )
    async with _tally(recorder, waits) as tally:
        assert await tally.list_webhooks() == []
    assert waits == [2.0, 1.0]
    assert len(recorder.sent) == 3


async def test_a_long_wait_or_a_503_to_a_write_that_is_not_busy_is_the_callers() -> None:
    waits: list[float] = []
    quota = {"error": {"code": "quota_exceeded", "message": "the day's slices are used up"}}
    unavailable = {"error": {"code": "unavailable", "message": "not reachable"}}
    recorder = Recorder(
        httpx.Response(429, headers={"Retry-After": "40000"}, json=quota),
        httpx.Response(503, headers={"Retry-After": "5"}, json=unavailable),
        httpx.Response(503, headers={"Retry-After": "5"}, json={"error": {"code": "busy"}}),
        httpx.Response(201, json={"session_id": "s2"}),
    )
    async with _tally(recorder, waits) as tally:
        with pytest.raises(TallyError, match="quota_exceeded"):
            await tally.create_session()
        with pytest.raises(TallyError, match="unavailable"):
            await tally.create_session()  # the edge's 503 to a POST: the service may have acted
        assert await tally.create_session() == "s2"  # `busy`: nothing was done, sent again
    assert waits == [5.0]


async def test_the_retries_are_bounded() -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    recorder = Recorder(*(httpx.Response(429, headers={"Retry-After": "1"}) for _ in range(5)))
    transport = AsyncRetryAfter(httpx.MockTransport(recorder), retries=2, sleep=sleep)
    async with httpx.AsyncClient(transport=transport, base_url="http://tally") as http:
        assert (await http.get("/v1/jobs")).status_code == 429
    assert waits == [1.0, 1.0]


async def test_the_webhook_api() -> None:
    made = {
        "webhook_id": "wh1",
        "url": URL,
        "events": ["job.completed", "session.completed"],
        "description": None,
        "enabled": True,
        "disabled_reason": None,
        "secret": "whsec_c2VjcmV0",
        "created_at": "2026-12-01T10:00:00+00:00",
        "updated_at": "2026-12-01T10:00:00+00:00",
    }
    public = {k: v for k, v in made.items() if k != "secret"}
    delivery = {
        "delivery_id": "d1",
        "webhook_id": "wh1",
        "event_id": "msg_1",
        "event_type": "job.completed",
        "status": "failed",
        "attempts": [{"attempt": 1, "at": "2026-12-01T10:00:01+00:00", "status_code": 500,
                      "latency_ms": 12.5, "error": None}],
        "next_attempt_at": None,
        "created_at": "2026-12-01T10:00:01+00:00",
    }  # fmt: skip
    rotated = {"webhook_id": "wh1", "secret": "whsec_bmV3", "previous_secret_expires_at": None}
    recorder = Recorder(
        httpx.Response(201, json=made),
        httpx.Response(200, json={"webhooks": [public]}),
        httpx.Response(200, json=public | {"enabled": False}),
        httpx.Response(200, json=rotated),
        httpx.Response(200, json={"deliveries": [delivery], "next_cursor": "c2"}),
        httpx.Response(202, json={"delivery_id": "d1", "status": "pending"}),
        httpx.Response(204),
    )
    async with _tally(recorder) as tally:
        webhook = await tally.create_webhook(URL, ["job.completed", "session.completed"])
        assert (recorder.last.method, recorder.last.url.path) == ("POST", "/v1/webhooks")
        assert recorder.body() == {"url": URL, "events": made["events"]}
        assert webhook.secret == "whsec_c2VjcmV0"

        assert [w.webhook_id for w in await tally.list_webhooks()] == ["wh1"]
        assert not (await tally.update_webhook("wh1", enabled=False)).enabled
        assert (recorder.last.method, recorder.body()) == ("PATCH", {"enabled": False})
        assert (await tally.rotate_webhook_secret("wh1")).secret == "whsec_bmV3"
        assert recorder.last.url.path == "/v1/webhooks/wh1/rotate-secret"

        page = await tally.deliveries("wh1", cursor="c1")
        assert recorder.last.url.path == "/v1/webhooks/wh1/deliveries"
        assert dict(recorder.last.url.params) == {"cursor": "c1"}
        assert page.deliveries[0].attempts[0].status_code == 500
        assert page.next_cursor == "c2"

        await tally.replay("wh1", "d1")
        assert recorder.last.url.path == "/v1/webhooks/wh1/deliveries/d1/replay"
        await tally.delete_webhook("wh1")
        assert (recorder.last.method, recorder.last.url.path) == ("DELETE", "/v1/webhooks/wh1")


class _Body(httpx.AsyncByteStream):
    """A response body that arrives in `pieces` and then, unless `whole`, breaks off."""

    def __init__(self, *pieces: bytes, whole: bool = True) -> None:
        self.pieces = pieces
        self.whole = whole

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece
        if not self.whole:
            raise httpx.ReadError("connection reset by peer")


async def test_an_export_is_streamed_into_the_file() -> None:
    rows = [b"job_id,filename,label,score\n", b"j1,1.jpg,seedling,0.9\n" * 1000]
    recorder = Recorder(httpx.Response(200, stream=_Body(*rows)))
    out = io.BytesIO()
    async with _tally(recorder) as tally:
        written = await tally.export("s1", "csv", out)
    assert (recorder.last.url.path, dict(recorder.last.url.params)) == (
        "/v1/sessions/s1/export",
        {"format": "csv"},
    )
    assert written == len(out.getvalue()) == sum(map(len, rows))


async def test_a_refused_export_raises_and_writes_nothing() -> None:
    envelope = {"error": {"code": "invalid_request", "message": "format must be csv, json, coco"}}
    out = io.BytesIO()
    async with _tally(Recorder(httpx.Response(422, json=envelope))) as tally:
        with pytest.raises(TallyError, match="invalid_request"):
            await tally.export("s1", "xls", out)
    assert out.getvalue() == b""


def _frame(event_id: str, kind: str, data: dict[str, Any]) -> bytes:
    return f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(data)}\n\n".encode()


class FakeStream:
    """The events route of a gateway whose connections drop: each connection is answered by
    the next of `connections` (a function of the Last-Event-ID it sent); what each sent is
    kept, and a stream token is minted per POST /v1/stream-tokens."""

    def __init__(self, *connections: Callable[[str | None], httpx.Response]) -> None:
        self.connections = list(connections)
        self.opened: list[httpx.Request] = []
        self.tokens = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/stream-tokens":
            self.tokens += 1
            return httpx.Response(201, json={"token": f"st2.t{self.tokens}", "session_id": "s"})
        if request.url.path.endswith("/events"):
            self.opened.append(request)
            return self.connections.pop(0)(request.headers.get("last-event-id"))
        page = {"session_id": "s", "version": "1.9", "jobs": [_job(2)], "summary": SUMMARY,
                "poll_interval_ms": 2000, "next_cursor": None}  # fmt: skip
        return httpx.Response(200, json=page)

    @property
    def resumed_from(self) -> list[str | None]:
        return [r.headers.get("last-event-id") for r in self.opened]


SNAPSHOT = _frame("1-0", "snapshot", {"jobs": [_job(1)], "next_cursor": "j1", "summary": SUMMARY})
DONE_SUMMARY = SUMMARY | {"processing": 0, "completed": 2}


def _first(last_event_id: str | None) -> httpx.Response:
    """`retry:`, the snapshot, one job event, then the connection drops inside a frame."""
    assert last_event_id is None
    body = _Body(
        b"retry: 0\n\n" + SNAPSHOT,
        _frame("2-0", "job", _job(1, "completed", 5)) + b"id: 3-0\nevent: job\nda",
        whole=False,
    )
    return httpx.Response(200, stream=body)


def _closed_early(last_event_id: str | None) -> httpx.Response:
    """The server ends the stream cleanly without `done` (a gateway restarting)."""
    assert last_event_id == "2-0"
    return httpx.Response(200, stream=_Body(_frame("3-0", "job", _job(2, "completed", 6))))


def _rest(last_event_id: str | None) -> httpx.Response:
    assert last_event_id == "3-0"
    return httpx.Response(200, stream=_Body(_frame("4-0", "done", {"summary": DONE_SUMMARY})))


async def test_a_cut_stream_resumes_after_the_last_event_with_nothing_lost_or_repeated() -> None:
    gateway = FakeStream(_first, _closed_early, _rest)
    async with _tally(gateway) as tally:
        events = [event async for event in tally.events("s")]
    assert [(e.id, e.event) for e in events] == [
        ("1-0", "snapshot"),
        ("2-0", "job"),
        ("3-0", "job"),
        ("4-0", "done"),
    ]
    assert gateway.resumed_from == [None, "2-0", "3-0"]
    assert all(r.headers["authorization"] == "Bearer tly_test" for r in gateway.opened)
    assert gateway.tokens == 0


async def test_a_reconnect_answered_204_ends_the_stream() -> None:
    """The session finished while the client was away, and it had every event: 204."""
    gateway = FakeStream(_first, lambda last: httpx.Response(204))
    async with _tally(gateway) as tally:
        events = [event async for event in tally.events("s")]
    assert [e.id for e in events] == ["1-0", "2-0"]
    assert gateway.resumed_from == [None, "2-0"]


async def test_a_stream_that_keeps_failing_raises_after_max_failures() -> None:
    def cut(last_event_id: str | None) -> httpx.Response:
        return httpx.Response(200, stream=_Body(b"retry: 0\n\n", whole=False))

    gateway = FakeStream(*[cut] * 3)
    async with _tally(gateway) as tally:
        with pytest.raises(httpx.ReadError):
            [event async for event in tally.events("s", max_failures=3)]
    assert len(gateway.opened) == 3


async def test_a_refused_stream_raises_the_envelopes_error() -> None:
    envelope = {"error": {"code": "not_found", "message": "no session s"}}
    gateway = FakeStream(lambda last: httpx.Response(404, json=envelope))
    async with _tally(gateway) as tally:
        with pytest.raises(TallyError) as refused:
            [event async for event in tally.events("s")]
    assert refused.value.code == "not_found"


async def test_with_stream_tokens_each_connection_shows_a_fresh_token_and_no_key() -> None:
    gateway = FakeStream(_first, _closed_early, _rest)
    async with _tally(gateway) as tally:
        events = [event async for event in tally.events("s", use_stream_token=True)]
    assert events[-1] == StreamEvent("4-0", "done", {"summary": DONE_SUMMARY})
    assert [r.url.params.get("access_token") for r in gateway.opened] == [
        "st2.t1",
        "st2.t2",
        "st2.t3",
    ]
    assert all("authorization" not in r.headers for r in gateway.opened)
    assert gateway.resumed_from == [None, "2-0", "3-0"]


async def test_following_gives_typed_states_across_cuts_and_reads_the_snapshots_pages() -> None:
    gateway = FakeStream(_first, _closed_early, _rest)
    async with _tally(gateway) as tally:
        states = [state async for state in tally.follow("s")]
    assert all(isinstance(state, SessionState) for state in states)
    snapshot, first_done, second_done, last = states
    assert [j.job_id for j in snapshot.jobs] == ["j1", "j2"]  # j2 from the page after it
    assert [j.status for j in first_done.jobs] == ["completed", "processing"]
    assert [j.status for j in second_done.jobs] == ["completed", "completed"]
    assert last.summary is not None
    assert last.summary.completed == 2
    assert last.finished
    assert first_done.jobs[1] is snapshot.jobs[1]  # an unchanged job is not validated again


async def test_following_polls_when_the_stream_cannot_be_had() -> None:
    refused = {"error": {"code": "unavailable", "message": "no stream here"}}
    done = {"session_id": "s", "version": "1.9", "jobs": [_job(1, "completed")],
            "summary": DONE_SUMMARY | {"total": 1, "completed": 1}, "poll_interval_ms": 30000,
            "next_cursor": None}  # fmt: skip

    def serve(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(502, json=refused)
        return httpx.Response(200, json=done)

    async with _tally(serve) as tally:
        states = [state async for state in tally.follow("s")]
    assert [[j.status for j in s.jobs] for s in states] == [["completed"]]
    assert states[0].version == "1.9"


async def test_polling_reads_the_pages_once_then_the_deltas_until_every_job_is_final() -> None:
    def body(jobs: list[dict[str, Any]], summary: dict[str, Any], **more: Any) -> dict[str, Any]:
        return {"session_id": "s", "version": "1.2", "jobs": jobs, "summary": summary,
                "poll_interval_ms": 2000, "next_cursor": None} | more  # fmt: skip

    recorder = Recorder(
        httpx.Response(200, json=body([_job(1, "completed"), _job(2)], SUMMARY)),
        httpx.Response(304),  # nothing moved yet
        httpx.Response(
            200,
            json=body([_job(2, "completed", 3)], DONE_SUMMARY, since="1.2", deleted=[]),
            headers={"ETag": "e3"},
        ),
    )
    async with _tally(recorder) as tally:
        states = [state async for state in tally.poll("s", interval_s=0)]
    assert [[j.status for j in s.jobs] for s in states] == [
        ["completed", "processing"],
        ["completed", "completed"],
    ]
    assert [dict(r.url.params) for r in recorder.sent] == [{}, {"since": "1.2"}, {"since": "1.2"}]
