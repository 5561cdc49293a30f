"""The gateway's SQL on a real PostgreSQL: tenant scoping, the job list's pages, deletion."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from tally_bus import Topology
from tally_contracts import sequence
from tally_contracts.statuses import JobStatus
from tally_contracts.v1 import JobEvent
from tally_db import ConflictError, Job, Store, job_from_row
from tally_gateway import _records

pytestmark = pytest.mark.integration

EVENTS = Topology("test").job_event


@pytest.fixture
async def store(database: str) -> AsyncIterator[Store]:
    async with Store.open(database) as opened:
        yield opened


async def _file(store: Store, tenant_id: uuid.UUID, session_id: uuid.UUID, name: str) -> Job:
    """A job as the upload service files it."""
    row = await store.pool.fetchrow(
        """INSERT INTO jobs (id, tenant_id, session_id, image_id, filename, object_key,
                             width, height)
           VALUES ($1, $2, $3, $4, $5, $6, 4000, 3000) RETURNING *""",
        uuid.uuid4(),
        tenant_id,
        session_id,
        uuid.uuid4(),
        name,
        f"{tenant_id}/{session_id}/{name}",
    )
    assert row is not None
    return job_from_row(row)


async def _finish(store: Store, job: Job, status: JobStatus) -> None:
    await store.pool.execute(
        "UPDATE jobs SET status = $2, phase = 'done', completed_at = now() WHERE id = $1",
        job.id,
        str(status),
    )


async def test_another_tenants_jobs_are_invisible(store: Store) -> None:
    a = await store.create_tenant("a")
    b = await store.create_tenant("b")
    session = await store.create_session(a.id, "tray 7")
    job = await _file(store, a.id, session.id, "a.jpg")

    assert await _records.get_job(store, a.id, job.id) == job
    assert await _records.get_job(store, b.id, job.id) is None
    assert await _records.session_jobs(store, b.id, session.id) == []
    assert await _records.list_jobs(store, b.id) == []
    assert await _records.get_result(store, b.id, job.id) is None


async def test_the_job_list_pages_in_creation_order_and_filters_by_status(store: Store) -> None:
    tenant = await store.create_tenant("a")
    first = await store.create_session(tenant.id)
    second = await store.create_session(tenant.id)
    jobs = [await _file(store, tenant.id, first.id, f"{n}.jpg") for n in range(3)]
    jobs.append(await _file(store, tenant.id, second.id, "3.jpg"))
    await _finish(store, jobs[1], JobStatus.FAILED)

    newest = await _records.list_jobs(store, tenant.id, limit=2)
    assert [j.filename for j in newest] == ["3.jpg", "2.jpg"]
    last = newest[-1]
    rest = await _records.list_jobs(store, tenant.id, after=(last.created_at, last.id))
    assert [j.filename for j in rest] == ["1.jpg", "0.jpg"]
    oldest = await _records.list_jobs(store, tenant.id, newest_first=False, limit=1)
    assert [j.filename for j in oldest] == ["0.jpg"]
    failed = await _records.list_jobs(store, tenant.id, status=JobStatus.FAILED)
    assert [j.filename for j in failed] == ["1.jpg"]
    in_second = await _records.list_jobs(store, tenant.id, session_id=second.id)
    assert [j.filename for j in in_second] == ["3.jpg"]
    assert [j.filename for j in await _records.session_jobs(store, tenant.id, first.id)] == [
        "0.jpg",
        "1.jpg",
        "2.jpg",
    ]


async def test_only_a_finished_job_is_deleted_and_its_deleted_event_goes_out_with_it(
    store: Store,
) -> None:
    a = await store.create_tenant("a")
    b = await store.create_tenant("b")
    session = await store.create_session(a.id)
    job = await _file(store, a.id, session.id, "a.jpg")

    with pytest.raises(ConflictError):
        await _records.delete_job(store, EVENTS, a.id, job.id)  # still queued: cancel it first
    assert await store.pool.fetchval("SELECT count(*) FROM outbox") == 0
    await _finish(store, job, JobStatus.COMPLETED)
    assert await _records.delete_job(store, EVENTS, b.id, job.id) is None  # not b's

    deleted = await _records.delete_job(store, EVENTS, a.id, job.id)
    assert deleted is not None
    assert (deleted.id, deleted.status) == (job.id, "completed")
    assert await _records.get_job(store, a.id, job.id) is None
    assert await _records.delete_job(store, EVENTS, a.id, job.id) is None  # gone already
    async with store.claim_pending() as claim:
        (pending,) = claim.messages
    entry = pending.entry
    assert (entry.exchange, entry.routing_key) == (EVENTS.exchange, EVENTS.routing_key)
    assert entry.message_type == JobEvent.DESCRIPTOR.full_name
    event = JobEvent.FromString(entry.payload)
    assert (event.WhichOneof("kind"), event.sequence, event.source) == (
        "deleted",
        sequence.DELETED,
        "gateway",
    )
    assert (event.job.tenant_id, event.job.session_id, event.job.job_id) == (
        str(a.id),
        str(session.id),
        str(job.id),
    )
    assert event.event_id
    assert event.HasField("emitted_at")
