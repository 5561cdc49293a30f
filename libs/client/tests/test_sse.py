"""The one event-stream parser (tally_client.sse), case by case of the HTML standard's
"interpreting an event stream"."""

from __future__ import annotations

import pytest

from tally_client.sse import Frame, SSEParser

STREAM = (
    b"retry: 3000\n\n"
    b": heartbeat\n\n"
    b'id: 1-0\nevent: snapshot\ndata: {"jobs": []}\n\n'
    b'id: 2-0\nevent: job\ndata: {"a":\ndata: 1}\n\n'
    b"data: no id, no type\n\n"
    b"id: 3-0\nevent: done\ndata: {}\n\n"
)
FRAMES = [
    Frame("snapshot", b'{"jobs": []}', "1-0"),
    Frame("job", b'{"a":\n1}', "2-0"),
    Frame("message", b"no id, no type", "2-0"),  # the last id stays, as EventSource keeps it
    Frame("done", b"{}", "3-0"),
]


def _fed(parser: SSEParser, pieces: list[bytes]) -> list[Frame]:
    return [frame for piece in pieces for frame in parser.feed(piece)]


def test_a_whole_stream_gives_its_frames_and_its_retry() -> None:
    parser = SSEParser()
    assert parser.feed(STREAM) == FRAMES
    assert parser.retry_ms == 3000
    assert parser.last_id == "3-0"


@pytest.mark.parametrize("at", range(1, len(STREAM)))
def test_a_stream_cut_anywhere_in_two_gives_the_same_frames(at: int) -> None:
    assert _fed(SSEParser(), [STREAM[:at], STREAM[at:]]) == FRAMES


@pytest.mark.parametrize("ending", [b"\r\n", b"\r"])
def test_crlf_and_cr_line_ends_read_as_lf_even_fed_a_byte_at_a_time(ending: bytes) -> None:
    stream = STREAM.replace(b"\n", ending)
    assert SSEParser().feed(stream) == FRAMES
    assert _fed(SSEParser(), [stream[i : i + 1] for i in range(len(stream))]) == FRAMES


def test_a_crlf_split_between_pieces_ends_one_line_not_two() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\ndata: b\r") == []
    assert parser.feed(b"\n\r\n") == [Frame("message", b"a\nb", None)]
    assert parser.feed(b"data: c\r") == []
    assert parser.feed(b"\n") == []
    assert parser.feed(b"\n") == [Frame("message", b"c", None)]  # CRLF, then LF: a blank line


def test_a_frame_cut_off_before_its_blank_line_waits_for_it() -> None:
    parser = SSEParser()
    assert parser.feed(b"id: 1-0\nevent: job\ndata: {}\n") == []
    assert parser.feed(b"\n") == [Frame("job", b"{}", "1-0")]


def test_comments_and_frames_without_data_dispatch_nothing() -> None:
    parser = SSEParser()
    assert parser.feed(b": heartbeat\n\n:\n\nretry: 10\n\nevent: job\n\nid: 7-0\n\n") == []
    assert parser.retry_ms == 10
    # The type of a frame without data is dropped with it; its id is kept.
    assert parser.feed(b"data: x\n\n") == [Frame("message", b"x", "7-0")]


def test_fields_are_read_as_the_standard_says() -> None:
    parser = SSEParser()
    stream = (
        b"data\n"  # no colon: the whole line is the name, the value is empty
        b"data:  two spaces\n"  # only the first space after the colon goes
        b"data:tight\n"
        b"colour: red\n"  # unknown fields are ignored
        b"retry: soon\n"  # not digits: ignored
        b"id: 4\x000\n"  # a NUL in an id: ignored
        b"\n"
    )
    assert parser.feed(stream) == [Frame("message", b"\n two spaces\ntight", None)]
    assert parser.retry_ms is None
    assert parser.feed(b"id: 5-0\n\nid\ndata: reset\n\n") == [Frame("message", b"reset", "")]
