"""Upload's records on a real PostgreSQL: new jobs and their outbox messages, tenant-scoped."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from tally_db import Job, OutboxEntry, Store, job_from_row
from tally_upload._records import NewJob, add_jobs

pytestmark = pytest.mark.integration


def _job(tenant_id: uuid.UUID, session_id: uuid.UUID, name: str = "a.jpg") -> NewJob:
    return NewJob(tenant_id, session_id, name, f"{tenant_id}/{session_id}/{name}", 4000, 3000)


def _message(routing_key: str = "photo.uploaded") -> OutboxEntry:
    return OutboxEntry("tally.work", routing_key, "tally.v1.PhotoUploaded", b"\x0a\x00")


async def _session_jobs(store: Store, tenant_id: uuid.UUID, session_id: uuid.UUID) -> list[Job]:
    rows = await store.pool.fetch(
        "SELECT * FROM jobs WHERE tenant_id = $1 AND session_id = $2 ORDER BY created_at, id",
        tenant_id,
        session_id,
    )
    return [job_from_row(r) for r in rows]


async def _pending_count(store: Store) -> int:
    count = await store.pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
    return int(count)


async def test_a_job_cannot_be_filed_under_another_tenants_session(store: Store) -> None:
    a = await store.create_tenant("a")
    b = await store.create_tenant("b")
    session = await store.create_session(a.id)
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await add_jobs(store, [_job(b.id, session.id)], [])


async def test_jobs_and_their_outbox_messages_commit_together_or_not_at_all(store: Store) -> None:
    tenant = await store.create_tenant("a")
    session = await store.create_session(tenant.id)
    broken = OutboxEntry("tally.work", None, "x", b"")  # type: ignore[arg-type]
    with pytest.raises(asyncpg.NotNullViolationError):
        await add_jobs(store, [_job(tenant.id, session.id)], [broken])
    assert await _session_jobs(store, tenant.id, session.id) == []
    assert await _pending_count(store) == 0

    jobs = await add_jobs(
        store,
        [_job(tenant.id, session.id, "1.jpg"), _job(tenant.id, session.id, "2.jpg")],
        [_message(), _message()],
    )
    assert [j.status for j in jobs] == ["queued", "queued"]
    assert [j.filename for j in await _session_jobs(store, tenant.id, session.id)] == [
        "1.jpg",
        "2.jpg",
    ]
    async with store.claim_pending() as claim:
        assert [p.entry for p in claim.messages] == [_message(), _message()]
        claim.sent.append(claim.messages[0].id)
    assert await _pending_count(store) == 1
