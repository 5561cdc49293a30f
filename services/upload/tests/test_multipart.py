"""The multipart reader: a file part is kept only up to the file limit, another field or too many
parts end the request before they are read, and no body, however broken, is a 5xx."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect

from tally_upload._multipart import (
    MAX_PART_HEADER_BYTES,
    FilePart,
    PartLimits,
    boundary_of,
    read_files,
)
from tally_web import ApiError

BOUNDARY = b"x-boundary-7"
LIMITS = PartLimits(max_file_bytes=1000, max_files=3, max_request_bytes=100_000)


def _part(name: bytes, filename: bytes | None, data: bytes, extra: bytes = b"") -> bytes:
    disposition = b'form-data; name="' + name + b'"'
    if filename is not None:
        disposition += b'; filename="' + filename + b'"'
    return (
        b"--" + BOUNDARY + b"\r\nContent-Disposition: " + disposition + b"\r\n" + extra
        + b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n"
    )  # fmt: skip


def _body(*parts: bytes) -> bytes:
    return b"".join(parts) + b"--" + BOUNDARY + b"--\r\n"


class Body:
    """A request body delivered in chunks, counting how many were asked for."""

    def __init__(self, data: bytes, chunk: int = 64) -> None:
        self.chunks = [data[i : i + chunk] for i in range(0, len(data), chunk)]
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.pulled += 1
            yield chunk


async def _read(body: Body, limits: PartLimits = LIMITS) -> list[FilePart]:
    return [part async for part in read_files(BOUNDARY, aiter(body), limits)]


async def _refusal(body: Body, limits: PartLimits = LIMITS) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await _read(body, limits)
    return caught.value


async def test_file_parts_come_out_with_their_names_and_bytes() -> None:
    body = Body(_body(_part(b"file", b"a.jpg", b"A" * 300), _part(b"file", b"b.jpg", b"\r\n--")))
    parts = await _read(body)
    assert parts == [FilePart("a.jpg", b"A" * 300, 300), FilePart("b.jpg", b"\r\n--", 4)]


async def test_a_part_over_the_file_limit_is_dropped_and_the_next_one_still_read() -> None:
    body = Body(
        _body(
            _part(b"file", b"big.jpg", b"B" * 5000),
            _part(b"file", b"exact.jpg", b"E" * 1000),
            _part(b"file", b"small.jpg", b"S" * 10),
        )
    )
    assert await _read(body) == [
        FilePart("big.jpg", None, 5000),
        FilePart("exact.jpg", b"E" * 1000, 1000),
        FilePart("small.jpg", b"S" * 10, 10),
    ]


async def test_each_part_is_handed_on_before_the_next_one_is_read() -> None:
    body = Body(_body(_part(b"file", b"a.jpg", b"A" * 500), _part(b"file", b"b.jpg", b"B" * 500)))
    parts = read_files(BOUNDARY, aiter(body), LIMITS)
    first = await anext(parts)
    assert first.filename == "a.jpg"
    assert body.pulled < len(body.chunks) // 2 + 2  # b.jpg is still waiting in the body
    await parts.aclose()


async def test_another_field_is_refused_by_name_before_its_data_is_read() -> None:
    body = Body(_body(_part(b"file", b"a.jpg", b"A"), _part(b"junk", None, b"J" * 5000)))
    refused = await _refusal(body)
    assert (refused.status, refused.code) == (400, "unknown_field")
    assert "'junk'" in refused.message
    assert body.pulled < len(body.chunks) // 2  # the 5000 junk bytes were not read


async def test_a_field_name_is_shown_without_its_control_characters() -> None:
    refused = await _refusal(Body(_body(_part(b"a\x1b[31mb\x00", None, b"x"))))
    assert refused.code == "unknown_field"
    assert "\x1b" not in refused.message
    assert "\x00" not in refused.message


async def test_more_parts_than_the_limit_are_refused() -> None:
    body = Body(_body(*(_part(b"file", f"{n}.jpg".encode(), b"x") for n in range(4))))
    refused = await _refusal(body)
    assert (refused.status, refused.code) == (400, "too_many_files")


async def test_a_part_with_huge_headers_is_refused() -> None:
    padding = b"X-Padding: " + b"p" * (MAX_PART_HEADER_BYTES // 3) + b"\r\n"
    big = _part(b"file", b"a.jpg", b"x", extra=padding * 3)
    refused = await _refusal(Body(_body(big)))
    assert (refused.status, refused.code) == (400, "part_headers_too_large")
    many = _part(b"file", b"a.jpg", b"x", extra=b"X-A: 1\r\n" * 10)  # the parser counts lines
    assert (await _refusal(Body(_body(many)))).code == "malformed_multipart"


@pytest.mark.parametrize(
    "body",
    [
        b"--" + BOUNDARY + b"\r\nContent-Disposition: form-data\r\n\r\nx\r\n--" + BOUNDARY + b"--",
        b"--wrong-boundary\r\n\r\nx",
        b"--" + BOUNDARY + b"\r\nno colon here\r\n\r\nx\r\n--" + BOUNDARY + b"--",
        _part(b"file", b"a.jpg", b"cut off here"),  # no closing boundary
    ],
    ids=["part-without-a-name", "another-boundary", "broken-header", "truncated"],
)
async def test_a_malformed_body_is_a_400(body: bytes) -> None:
    refused = await _refusal(Body(body))
    assert (refused.status, refused.code) == (400, "malformed_multipart")


async def test_a_body_streaming_past_the_request_limit_is_a_413() -> None:
    limits = PartLimits(max_file_bytes=1000, max_files=3, max_request_bytes=2000)
    body = Body(_body(_part(b"file", b"a.jpg", b"A" * 5000)))
    refused = await _refusal(body, limits)
    assert (refused.status, refused.code) == (413, "request_too_large")
    assert body.pulled < len(body.chunks)


async def test_an_empty_body_has_no_parts() -> None:
    assert await _read(Body(b"")) == []


def test_a_declared_length_over_the_request_limit_is_refused_from_the_headers() -> None:
    headers = Headers({"content-length": "100001", "content-type": "multipart/form-data; b=1"})
    with pytest.raises(ApiError) as caught:
        boundary_of(headers, LIMITS)
    assert (caught.value.status, caught.value.code) == (413, "request_too_large")


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({"content-type": "application/json"}, 415, "unsupported_media_type"),
        ({"content-type": "multipart/form-data"}, 400, "malformed_multipart"),
        ({"content-length": "12x", "content-type": "multipart/form-data"}, 400, "invalid_request"),
    ],
    ids=["json", "no-boundary", "bad-length"],
)
def test_headers_that_cannot_be_a_photo_upload_are_refused(
    headers: dict[str, str], status: int, code: str
) -> None:
    with pytest.raises(ApiError) as caught:
        boundary_of(Headers(headers), LIMITS)
    assert (caught.value.status, caught.value.code) == (status, code)


async def test_a_boundary_over_70_characters_is_a_400() -> None:
    with pytest.raises(ApiError) as caught:
        await anext(read_files(b"b" * 80, aiter(Body(b"x")), LIMITS))
    assert (caught.value.status, caught.value.code) == (400, "malformed_multipart")


def test_the_boundary_is_read_from_the_content_type() -> None:
    headers = Headers({"content-type": 'multipart/form-data; boundary="x-boundary-7"'})
    assert boundary_of(headers, LIMITS) == BOUNDARY
    assert boundary_of(Headers({}), LIMITS) is None


async def test_a_client_leaving_mid_body_ends_the_request_as_a_4xx_not_a_5xx() -> None:
    async def leaving() -> AsyncIterator[bytes]:
        yield _part(b"file", b"a.jpg", b"A" * 100)
        raise ClientDisconnect

    with pytest.raises(ApiError) as caught:
        [part async for part in read_files(BOUNDARY, leaving(), LIMITS)]
    assert (caught.value.status, caught.value.code) == (400, "incomplete_request")
