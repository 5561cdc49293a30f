"""The object store against moto's S3 server, over HTTP."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from tally_storage import PART_SIZE, ObjectNotFoundError, ObjectStore, ObjectTooLargeError

pytestmark = pytest.mark.integration


async def _chunks(data: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_bytes_round_trip(store: ObjectStore) -> None:
    stored = await store.put_bytes("t1/s1/j1/original.jpg", b"\xff\xd8jpeg", "image/jpeg")
    assert stored.size == 6
    assert await store.get_bytes("t1/s1/j1/original.jpg") == b"\xff\xd8jpeg"
    assert await store.exists("t1/s1/j1/original.jpg")


async def test_a_small_stream_is_stored_in_one_put(store: ObjectStore) -> None:
    data = os.urandom(300_000)
    stored = await store.put_stream("small", _chunks(data), "image/jpeg")
    assert stored.size == len(data)
    assert await store.get_bytes("small") == data


async def test_a_large_stream_goes_up_in_parts_and_comes_back_whole(store: ObjectStore) -> None:
    data = os.urandom(2 * PART_SIZE + 12345)
    stored = await store.put_stream("large", _chunks(data), "image/jpeg")
    assert stored.size == len(data)
    assert await store.get_bytes("large") == data


async def test_a_stream_over_the_limit_is_refused_and_leaves_nothing(store: ObjectStore) -> None:
    data = os.urandom(PART_SIZE + 1000)
    with pytest.raises(ObjectTooLargeError):
        await store.put_stream("too-big", _chunks(data), "image/jpeg", max_bytes=PART_SIZE + 10)
    assert not await store.exists("too-big")


async def test_a_missing_object_is_a_clear_error(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFoundError):
        await store.get_bytes("nope")
    assert not await store.exists("nope")


async def test_delete_removes_the_object(store: ObjectStore) -> None:
    await store.put_bytes("gone", b"x", "text/plain")
    await store.delete("gone")
    assert not await store.exists("gone")
