"""The projector's handler on an in-memory bus, with fakes for the projection and the store."""

from __future__ import annotations

import asyncio
import functools
from datetime import datetime
from typing import cast

from tally_bus.testing import MemoryBus
from tally_contracts import sequence
from tally_contracts.events import job_event
from tally_contracts.v1 import JobEvent, JobRef
from tally_db import Store
from tally_projector.deps import Deps
from tally_projector.handlers import handle_job_event
from tally_projector.projection import Projection, ProjectionLostError

REF = JobRef(tenant_id="t1", session_id="s1", job_id="j1")


class FakeProjection:
    """Folds nothing while it is not whole (like the Lua fold), except when rebuilding."""

    def __init__(self, *, whole: bool) -> None:
        self.whole = whole
        self.folded: list[tuple[str, bool]] = []  # event id, while rebuilding
        self.marked_whole = 0

    async def fold(self, event: JobEvent, *, rebuilding: bool = False) -> bool:
        if not (self.whole or rebuilding):
            raise ProjectionLostError("lost")
        self.folded.append((event.event_id, rebuilding))
        return True

    async def is_ready(self) -> bool:
        return self.whole

    async def mark_ready(self) -> None:
        self.whole = True
        self.marked_whole += 1

    async def announce(self, session_id: str, job_ids: object) -> None:
        raise AssertionError("no job was recorded, none is announced")


class FakePool:
    """PostgreSQL with no job updated lately: a rebuild reads and folds nothing."""

    def __init__(self) -> None:
        self.reads: list[datetime] = []

    async def fetch(self, query: str, since: datetime) -> list[object]:
        self.reads.append(since)
        await asyncio.sleep(0)  # a round trip: other handlers run meanwhile
        return []


class FakeStore:
    def __init__(self) -> None:
        self.pool = FakePool()


def _deps(projection: FakeProjection, store: FakeStore) -> Deps:
    return Deps(cast(Projection, projection), cast(Store, store))


def _progress(n: int) -> JobEvent:
    return job_event(
        REF,
        sequence.progress(n),
        "orchestrator",
        event_id=f"p{n}",
        progress=JobEvent.Progress(slices_done=n, total_slices=8),
    )


async def test_events_from_the_bus_are_folded_as_they_come() -> None:
    bus, projection, store = MemoryBus(), FakeProjection(whole=True), FakeStore()
    await bus.consume(
        bus.topology.events_queue,
        functools.partial(handle_job_event, deps=_deps(projection, store)),
        prefetch=64,
    )
    for n in (1, 2):
        await bus.publish(bus.topology.job_event, _progress(n))
    assert projection.folded == [("p1", False), ("p2", False)]
    assert store.pool.reads == []  # no rebuild: the projection was whole


async def test_a_lost_projection_is_rebuilt_once_however_many_events_wait_for_it() -> None:
    bus, projection, store = MemoryBus(), FakeProjection(whole=False), FakeStore()
    await bus.consume(
        bus.topology.events_queue,
        functools.partial(handle_job_event, deps=_deps(projection, store)),
        prefetch=64,
    )
    await asyncio.gather(*(bus.publish(bus.topology.job_event, _progress(n)) for n in (1, 2, 3)))
    assert projection.marked_whole == 1  # one rebuild...
    assert len(store.pool.reads) == 2  # ...of two passes (the recent jobs, then the latest)
    assert sorted(projection.folded) == [("p1", False), ("p2", False), ("p3", False)]
