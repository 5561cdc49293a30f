"""Server-Sent Events read as EventSource reads them (the HTML standard's event stream), from
bytes fed in whatever pieces they arrive: the one parser of Tally's clients (the SDK's event
stream, the benchmark's thousands of subscribers).

A frame's data stays bytes: what it means is its caller's business (the SDK decodes its JSON, a
load client only looks for one field in it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Frame:
    """One dispatched event: its type (`message` when the frame names none), its data lines
    joined with LF, and the last event id (the frame's own, or the last one before it, as
    EventSource's `lastEventId`; None while the stream has sent none)."""

    event: str
    data: bytes
    id: str | None


class SSEParser:
    """Frames out of an event stream fed in arbitrary pieces; lines end with LF, CRLF or CR.
    Comments (`:` heartbeats) and frames without data dispatch nothing; a frame cut off before
    its blank line is never dispatched. `retry_ms` is the last `retry:` the stream set."""

    def __init__(self) -> None:
        self._buffer = b""  # what follows the last complete frame, line ends made LF
        self._scanned = 0  # how much of the buffer has been searched for a frame's end
        self._after_cr = False  # the last piece ended with CR: an LF starting the next is its
        self.last_id: str | None = None
        self.retry_ms: int | None = None

    def feed(self, data: bytes) -> list[Frame]:
        if self._after_cr and data:
            self._after_cr = False
            if data[:1] == b"\n":
                data = data[1:]
        if b"\r" in data:
            self._after_cr = data.endswith(b"\r")
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buffer = self._buffer + data if self._buffer else data
        frames = []
        start = 0
        # A frame's end is a blank line; a big one arriving in many pieces is searched once.
        search = max(self._scanned - 1, 0)
        while (end := buffer.find(b"\n\n", search)) != -1:
            frame = self._frame(buffer[start:end])
            if frame is not None:
                frames.append(frame)
            start = search = end + 2
        self._buffer = buffer[start:]
        self._scanned = len(self._buffer)
        return frames

    def _frame(self, block: bytes) -> Frame | None:
        """The frame of one block of lines (without the blank line that ends it)."""
        event = b""
        data: list[bytes] = []
        for line in block.split(b"\n"):
            if not line or line[0] == 0x3A:  # ':' starts a comment
                continue
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                data.append(value)
            elif name == b"event":
                event = value
            elif name == b"id" and b"\0" not in value:
                self.last_id = value.decode()
            elif name == b"retry" and value.isdigit():
                self.retry_ms = int(value)
        if not data:
            return None
        return Frame(event.decode() or "message", b"\n".join(data), self.last_id)
