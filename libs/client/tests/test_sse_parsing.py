"""The SDK's reading of Server-Sent Events."""

from __future__ import annotations

from collections.abc import Iterator

import httpx

from tally_client.sdk import StreamEvent, TallyClient, parse_events


def test_frames_are_read_as_eventsource_reads_them() -> None:
    lines = [
        "retry: 3000",
        "",
        "id: 1-0",
        "event: snapshot",
        'data: {"jobs": []}',
        "",
        ": heartbeat",
        "",
        "id: 2-0",
        "event: job",
        'data: {"a":',
        "data: 1}",
        "",
        "id: 3-0",
        "event: job",
        'data: {"cut": "before its blank line"}',
    ]
    chunks = [(line + "\n").encode() for line in lines]
    assert list(parse_events(chunks)) == [
        3000,
        StreamEvent("1-0", "snapshot", {"jobs": []}),
        StreamEvent("2-0", "job", {"a": 1}),
    ]


class _Cut(httpx.SyncByteStream):
    """A response body that arrives in `pieces` and then, unless `whole`, breaks off."""

    def __init__(self, pieces: list[bytes], whole: bool) -> None:
        self.pieces = pieces
        self.whole = whole

    def __iter__(self) -> Iterator[bytes]:
        yield from self.pieces
        if not self.whole:
            raise httpx.ReadError("connection reset")


def test_a_cut_stream_resumes_after_the_last_event_it_gave() -> None:
    """The first connection breaks off inside a frame: the client reconnects with the id of
    the last whole event it yielded, after the server's `retry:`, and ends at `done`."""
    asked: list[str | None] = []

    def serve(request: httpx.Request) -> httpx.Response:
        asked.append(request.headers.get("last-event-id"))
        if len(asked) == 1:
            pieces = [b"retry: 1\n\nid: 1-0\nevent: job\nda", b'ta: {"n": 1}\n\nid: 2-0\nev']
            return httpx.Response(200, stream=_Cut(pieces, whole=False))
        pieces = [b'id: 2-0\r\nevent: job\r\ndata: {"n": 2}\r\n\r\n', b"id: 3-0\nevent: done\n"]
        return httpx.Response(200, stream=_Cut([*pieces, b"data: {}\n\n"], whole=True))

    with TallyClient("http://tally", "tly_test") as client:
        client._http.close()  # the same client, its requests answered here
        client._http = httpx.Client(base_url="http://tally", transport=httpx.MockTransport(serve))
        events = list(client.events("s"))
    assert events == [
        StreamEvent("1-0", "job", {"n": 1}),
        StreamEvent("2-0", "job", {"n": 2}),
        StreamEvent("3-0", "done", {}),
    ]
    assert asked == [None, "1-0"]
