"""Reading a photo upload's multipart body as it streams, within fixed bounds.

Starlette's form parser spools every file part to disk in full before anyone can look at its
size, and takes any field. This reader keeps a `file` part in memory only up to the file limit
(past it, the rest of that part is read and dropped, and the next part is read as usual: good
files are accepted even when others are refused), refuses any other field as soon as its headers
are read, and counts parts, header bytes and body bytes as they arrive. What it holds at a time
is one file part of at most `max_file_bytes`, whatever the consumer keeps of the parts it gave."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect

from tally_web import ApiError

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

FIELD = b"file"  # the one field of the request; its parts are the photos
MULTIPART = b"multipart/form-data"
MAX_PART_HEADER_BYTES = 8 * 1024  # all header lines of one part together (names and values)
MAX_PART_HEADERS = 8  # header lines per part (a browser sends 2)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PartLimits:
    max_file_bytes: int
    max_files: int
    max_request_bytes: int


@dataclass(frozen=True, slots=True)
class FilePart:
    """One `file` part as received: its filename as sent, and its bytes, None when it was over
    the file limit (then only its `size` was counted)."""

    filename: str
    data: bytes | None
    size: int


def boundary_of(headers: Headers, limits: PartLimits) -> bytes | None:
    """The request's multipart boundary, after what its headers alone can refuse: a declared
    length over the request limit (413, before a byte of the body is read) or a body that is not
    multipart/form-data (415). None when it has no Content-Type (and so no parts)."""
    declared = headers.get("content-length")
    if declared is not None:
        if not declared.isascii() or not declared.isdigit():
            raise ApiError(400, "invalid_request", "the Content-Length header is not a number")
        if int(declared) > limits.max_request_bytes:
            raise _too_large(limits)
    content_type = headers.get("content-type")
    if content_type is None:
        return None
    kind, options = parse_options_header(content_type)
    if kind != MULTIPART:
        raise ApiError(
            415,
            "unsupported_media_type",
            "send the photos as multipart/form-data, one part named 'file' each",
        )
    boundary = options.get(b"boundary")
    if not boundary:
        raise ApiError(400, "malformed_multipart", "the multipart Content-Type has no boundary")
    return boundary


async def read_files(
    boundary: bytes, body: AsyncIterator[bytes], limits: PartLimits
) -> AsyncGenerator[FilePart, None]:
    """Each `file` part of the body as soon as it has ended. Reading stops while the consumer
    works on a part (the body waits in the socket, not here); an ApiError ends it: 400 for an
    unknown field, too many parts, headers too large or a malformed body; 413 past the request
    limit."""
    parts = _Parts(limits)
    try:
        parser = MultipartParser(
            boundary,
            parts.callbacks(),
            max_header_count=MAX_PART_HEADERS,
            max_header_size=MAX_PART_HEADER_BYTES,
        )
    except FormParserError:
        raise _malformed("the multipart boundary is over 70 characters") from None
    received = 0
    try:
        async for chunk in body:
            received += len(chunk)
            if received > limits.max_request_bytes:
                raise _too_large(limits)
            try:
                parser.write(chunk)
            except FormParserError as exc:
                logger.info("malformed multipart body: %s", exc)
                raise _malformed("the multipart body cannot be read") from None
            while parts.done:
                yield parts.done.pop(0)
    except ClientDisconnect:
        # Nobody is left to answer; the envelope keeps the refusal out of the 5xx counts.
        raise ApiError(400, "incomplete_request", "the client left before the body ended") from None
    if received and not parts.ended:
        raise _malformed("the multipart body ends before its closing boundary")


class _Parts:
    """The parser's callbacks (synchronous, called from `parser.write`): the current part's
    headers and bytes, and the parts that have ended, for `read_files` to hand on."""

    def __init__(self, limits: PartLimits) -> None:
        self.limits = limits
        self.done: list[FilePart] = []
        self.ended = False
        self.count = 0
        self._begin()

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _begin(self) -> None:
        self._name = b""
        self._value = b""
        self._disposition = b""
        self._header_bytes = 0
        self._filename = ""
        self._chunks: list[bytes] = []
        self._size = 0

    def _count_header(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_PART_HEADER_BYTES:
            raise ApiError(
                400,
                "part_headers_too_large",
                f"a part's headers are over {MAX_PART_HEADER_BYTES // 1024} KiB",
            )

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._value += data[start:end]

    def _header_end(self) -> None:
        if self._name.lower() == b"content-disposition":
            self._disposition = self._value
        self._name = self._value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        field = options.get(b"name")
        if field is None:
            raise _malformed("a part has no Content-Disposition with a name")
        if field != FIELD:
            shown = "".join(c for c in field.decode("utf-8", "replace") if c.isprintable())[:64]
            raise ApiError(
                400,
                "unknown_field",
                f"unknown field '{shown}': send the photos as parts named 'file', nothing else",
            )
        self.count += 1
        if self.count > self.limits.max_files:
            raise ApiError(
                400, "too_many_files", f"send at most {self.limits.max_files} files a request"
            )
        # Header bytes are latin-1 on the wire; clients put UTF-8 in them.
        self._filename = options.get(b"filename", b"").decode("utf-8", "replace")

    def _data(self, data: bytes, start: int, end: int) -> None:
        self._size += end - start
        if self._size <= self.limits.max_file_bytes:
            self._chunks.append(data[start:end])
        elif self._chunks:
            self._chunks = []  # over the limit: what was kept goes, and nothing more is kept

    def _part_end(self) -> None:
        kept = self._size <= self.limits.max_file_bytes
        data = b"".join(self._chunks) if kept else None
        self._chunks = []
        self.done.append(FilePart(self._filename, data, self._size))

    def _end(self) -> None:
        self.ended = True


def _malformed(message: str) -> ApiError:
    return ApiError(400, "malformed_multipart", message)


def _too_large(limits: PartLimits) -> ApiError:
    mb = limits.max_request_bytes / 1024 / 1024
    return ApiError(413, "request_too_large", f"the request is over {mb:.0f} MB")
