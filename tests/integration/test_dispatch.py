"""Fair dispatch in the record store: turns between tenants, limits, lost chunks (real
PostgreSQL; the bus plays no part until the outbox is relayed)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest

from tally_bus import Topology
from tally_contracts.v1 import JobEvent
from tally_db import OutboxEntry, Store
from tally_orchestrator._records import PlannedChunk, Records
from tally_orchestrator._turns import DispatchLimits
from tally_upload._records import NewJob, add_jobs

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(database: str) -> AsyncIterator[Store]:
    async with Store.open(database) as store:
        yield store


@pytest.fixture
def records(store: Store) -> Records:
    return Records(store, Topology())


@dataclass(frozen=True)
class Tenant:
    id: uuid.UUID
    session_id: uuid.UUID
    jobs: list[uuid.UUID]


async def _tenant(records: Records, store: Store, name: str, jobs: int, chunks: int) -> Tenant:
    """A tenant's session of `jobs` planned photos of `chunks` chunks each, held for dispatch;
    each chunk's payload names it ("name/job/chunk")."""
    tenant = await store.create_tenant(name)
    session = await store.create_session(tenant.id)
    created = await add_jobs(
        store,
        [
            NewJob(tenant.id, session.id, f"{n}.jpg", f"k/{n}/original.jpg", 800, 600)
            for n in range(jobs)
        ],
        [],
    )
    for n, job in enumerate(created):
        held = [
            PlannedChunk(i, 4, OutboxEntry("work", "detect", "T", f"{name}/{n}/{i}".encode()))
            for i in range(chunks)
        ]
        assert await records.plan_job(tenant.id, job.id, 4 * chunks, chunks, [], held)
    return Tenant(tenant.id, session.id, [job.id for job in created])


async def _sent(store: Store) -> list[str]:
    """What the dispatch put in the outbox since the last call, in order (marked sent); the
    JobEvents that recording and cancelling write with it are left out."""
    async with store.claim_pending() as claim:
        claim.sent.extend(m.id for m in claim.messages)
        event = JobEvent.DESCRIPTOR.full_name
        return [m.entry.payload.decode() for m in claim.messages if m.entry.message_type != event]


async def _record(records: Records, tenant: Tenant, job_id: uuid.UUID, index: int) -> None:
    """A detector's result for the chunk comes in."""
    await records.record_chunk(tenant.id, job_id, index, 4, b"")


async def test_tenants_take_turns_within_the_window_in_upload_order(
    records: Records, store: Store
) -> None:
    await _tenant(records, store, "big", jobs=50, chunks=2)
    await _tenant(records, store, "small", jobs=2, chunks=1)
    limits = DispatchLimits(window=4, per_tenant=8)

    assert len(await records.dispatch(limits)) == 4
    sent = await _sent(store)
    # Neither was served before: they alternate (either first), each in upload order.
    assert [s.split("/")[0] for s in sent] in (["big", "small"] * 2, ["small", "big"] * 2)
    assert [s for s in sent if s.startswith("big")] == ["big/0/0", "big/0/1"]
    assert [s for s in sent if s.startswith("small")] == ["small/0/0", "small/1/0"]
    assert await records.dispatch(limits) == []  # the window is full: nothing more goes


async def test_a_late_tenant_waits_for_the_window_not_the_backlog(
    records: Records, store: Store
) -> None:
    """The big tenant's 100 chunks are queued first and fill the window; the small tenant's,
    planned later, take every other slot that frees up."""
    big = await _tenant(records, store, "big", jobs=50, chunks=2)
    limits = DispatchLimits(window=4, per_tenant=8)
    out = await records.dispatch(limits)
    await _sent(store)
    small = await _tenant(records, store, "small", jobs=3, chunks=1)
    owner = {**dict.fromkeys(big.jobs, big), **dict.fromkeys(small.jobs, small)}

    order: list[str] = []
    while sum(s.startswith("small") for s in order) < 3:
        job_id, index = out.pop(0)  # a detector finishes the chunk out longest
        await _record(records, owner[job_id], job_id, index)
        out += await records.dispatch(limits)
        order += await _sent(store)
    assert [s.split("/")[0] for s in order] == ["small", "big", "small", "big", "small"]


async def test_per_tenant_limits_hold_and_the_rest_goes_to_others(
    records: Records, store: Store
) -> None:
    capped = await _tenant(records, store, "capped", jobs=5, chunks=2)
    other = await _tenant(records, store, "other", jobs=5, chunks=2)
    limits = DispatchLimits(window=6, per_tenant=8, tenants={capped.id: 1})
    assert len(await records.dispatch(limits)) == 6
    assert await records.chunks_out() == {capped.id: 1, other.id: 5}
    limits = DispatchLimits(window=20, per_tenant=8, tenants={capped.id: 1})
    assert len(await records.dispatch(limits)) == 3  # other reaches its default limit, 8
    assert await records.chunks_out() == {capped.id: 1, other.id: 8}


async def test_finished_jobs_free_their_slots_and_are_never_sent_again(
    records: Records, store: Store
) -> None:
    t = await _tenant(records, store, "t", jobs=3, chunks=2)
    limits = DispatchLimits(window=2, per_tenant=8)
    assert await records.dispatch(limits) == [(t.jobs[0], 0), (t.jobs[0], 1)]
    await _sent(store)
    assert await records.fail_job(t.id, t.jobs[0], "image_unreadable", "truncated", [])
    cancelled = await records.cancel_jobs(t.id, t.session_id, t.jobs[1], "operator")
    assert [job.id for job in cancelled] == [t.jobs[1]]
    assert len(await records.dispatch(limits)) == 2
    assert await _sent(store) == ["t/2/0", "t/2/1"]  # nothing of the failed or cancelled job


async def test_lost_chunks_are_sent_again_then_fail_their_job(
    records: Records, store: Store, database: str
) -> None:
    t = await _tenant(records, store, "t", jobs=1, chunks=2)
    limits = DispatchLimits(window=2, per_tenant=8)
    await records.dispatch(limits)
    await _sent(store)
    await _record(records, t, t.jobs[0], 0)

    await _age_dispatches(database)
    lost = await records.lost_chunks(after_s=300, max_dispatches=2)
    assert (lost.redispatched, lost.exhausted) == ([(t.jobs[0], 1)], [])
    assert await records.dispatch(limits) == [(t.jobs[0], 1)]
    assert await _sent(store) == ["t/0/1"]

    assert (await records.lost_chunks(after_s=300, max_dispatches=2)).redispatched == []  # recent
    await _age_dispatches(database)
    lost = await records.lost_chunks(after_s=300, max_dispatches=2)
    assert lost.redispatched == []
    assert [job.id for job in lost.exhausted] == [t.jobs[0]]
    assert await records.fail_job(t.id, t.jobs[0], "chunk_lost", "lost twice", [])
    assert await records.chunks_out() == {}


async def test_one_dispatcher_at_a_time(records: Records, store: Store, database: str) -> None:
    """Another replica's dispatch while one holds the lock sends nothing (and waits for none)."""
    await _tenant(records, store, "t", jobs=2, chunks=2)
    holder = await asyncpg.connect(database)
    try:
        async with holder.transaction():
            await holder.execute("SELECT pg_advisory_xact_lock(x'7A110002'::bigint)")
            assert await records.dispatch(DispatchLimits(window=4, per_tenant=8)) == []
    finally:
        await holder.close()
    assert len(await records.dispatch(DispatchLimits(window=4, per_tenant=8))) == 4


async def _age_dispatches(database: str) -> None:
    connection = await asyncpg.connect(database)
    try:
        await connection.execute(
            "UPDATE chunk_dispatch SET dispatched_at = dispatched_at - interval '1 hour'"
        )
    finally:
        await connection.close()
