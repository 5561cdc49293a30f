"""The SDK's reading of Server-Sent Events."""

from __future__ import annotations

from tally_client.sdk import StreamEvent, parse_events


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
    assert list(parse_events(lines)) == [
        3000,
        StreamEvent("1-0", "snapshot", {"jobs": []}),
        StreamEvent("2-0", "job", {"a": 1}),
    ]
