"""The asynchronous SDK against the real local stack (`make up`'s launcher): a session followed
over the event stream through a TCP proxy that cuts the connection in the middle of the run.
The resumed stream (Last-Event-ID, a fresh stream token per connection) must give exactly the
events of a stream that was never cut: no gap, no repeat; then each result reads typed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tally_client import AsyncRetryAfter, AsyncTally, JobResult, StreamEvent
from tally_client.sdk import FINAL
from tally_synth import write_dataset
from tests.e2e.harness import Stack, local_stack
from tests.faults import FaultProxy

pytestmark = pytest.mark.e2e
CUT_AFTER = 4  # events through the proxy before it cuts every connection


@pytest.fixture(scope="module")
def stack(module_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with local_stack(module_database, tmp_path_factory.mktemp("async-sdk") / "stack") as stack:
        yield stack


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    directory = tmp_path_factory.mktemp("photos")
    write_dataset(directory, count=3, seed=5_150, width=1600, height=1200, workers=2)
    return sorted(directory.glob("*.jpg"))


@pytest.fixture
def api_key(stack: Stack) -> str:
    return stack.admin_key("async-sdk")


@pytest.fixture
def proxy(stack: Stack) -> Iterator[FaultProxy]:
    """A TCP proxy to the stack's edge; `restore()` aborts every connection through it."""
    port = int(stack.url.rsplit(":", 1)[1])
    with FaultProxy(("127.0.0.1", port)) as proxy:
        yield proxy


class _Opens(httpx.AsyncBaseTransport):
    """The real network, noting each event stream the client opens (what it sends)."""

    def __init__(self) -> None:
        self._inner = AsyncRetryAfter(httpx.AsyncHTTPTransport())
        self.streams: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            self.streams.append(request)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _order(event: StreamEvent) -> tuple[int, int]:
    ms, _, seq = event.id.partition("-")
    return int(ms), int(seq)


async def test_a_stream_cut_mid_run_resumes_with_no_gap_and_no_repeat(
    stack: Stack, api_key: str, proxy: FaultProxy, photos: list[Path]
) -> None:
    opens = _Opens()
    direct = AsyncTally(stack.url, api_key)
    cut = AsyncTally(f"http://127.0.0.1:{proxy.port}", api_key, transport=opens)
    async with direct, cut, asyncio.timeout(300):
        session = await direct.create_session("async sdk")
        reference: list[StreamEvent] = []
        resumed: list[StreamEvent] = []
        both_subscribed = asyncio.Barrier(3)

        async def read_whole() -> None:
            async for event in direct.events(session):
                reference.append(event)
                if len(reference) == 1:
                    await both_subscribed.wait()

        async def read_through_the_proxy() -> None:
            async for event in cut.events(session, use_stream_token=True):
                resumed.append(event)
                if len(resumed) == 1:
                    await both_subscribed.wait()
                if len(resumed) == CUT_AFTER:
                    await asyncio.to_thread(proxy.restore)  # every connection aborted

        readers = [asyncio.create_task(read_whole()), asyncio.create_task(read_through_the_proxy())]
        await both_subscribed.wait()  # both have their snapshot of the empty session
        upload = await direct.upload(session, photos)
        assert [j.filename for j in upload.jobs] == [p.name for p in photos]
        await asyncio.gather(*readers)

    # The cut stream was opened again after the cut, from the last event it had (the events
    # that came in one piece with the one it was cut after were had too), with a token of its
    # own each time and never the key.
    assert len(opens.streams) >= 2
    assert opens.streams[0].headers.get("last-event-id") is None
    assert opens.streams[1].headers["last-event-id"] in {e.id for e in resumed[CUT_AFTER - 1 :]}
    after = [e.id for e in resumed].index(opens.streams[1].headers["last-event-id"])
    assert resumed[after + 1 :], "the resumed connection gave nothing: the cut came too late"
    tokens = [r.url.params["access_token"] for r in opens.streams]
    assert len(set(tokens)) == len(tokens)
    assert all("authorization" not in r.headers for r in opens.streams)

    # Both snapshots were of the same moment (nothing uploaded yet): from there on the resumed
    # stream is the uncut one, event for event.
    assert resumed[0].event == reference[0].event == "snapshot"
    assert resumed[0].data["jobs"] == reference[0].data["jobs"] == []
    assert [(e.id, e.event, e.data) for e in resumed[1:]] == [
        (e.id, e.event, e.data) for e in reference[1:]
    ]
    orders = [_order(e) for e in resumed[1:]]
    assert orders == sorted(set(orders))  # strictly increasing: nothing repeated
    assert resumed[-1].event == "done"
    finals = [e.data for e in resumed if e.event == "job" and e.data["status"] in FINAL]
    job_ids = {j.job_id for j in upload.jobs}
    assert sorted(j["job_id"] for j in finals) == sorted(job_ids)  # each final state once
    assert all(j["status"] == "completed" for j in finals)

    async with AsyncTally(stack.url, api_key) as tally:
        for final in finals:
            result = await tally.result(final["job_id"])
            assert isinstance(result, JobResult)
            assert result.job_id == final["job_id"]
            assert (result.width, result.height) == (1600, 1200)
            assert result.counts == final["result"]["counts"]
            assert sum(result.counts.values()) == len(result.detections)
            for detection in result.detections:
                x1, y1, x2, y2 = detection.bbox
                assert 0 <= x1 < x2 <= 1600
                assert 0 <= y1 < y2 <= 1200
                assert detection.label in result.counts
        state = await tally.jobs(session)
        assert state.finished
        assert {j.job_id for j in state.jobs} == job_ids
