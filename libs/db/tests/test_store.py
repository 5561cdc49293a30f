"""The record store on a real PostgreSQL: migrations, API keys, tenant scoping, the outbox."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

from tally_db import (
    ConflictError,
    NotFoundError,
    OutboxEntry,
    OutboxRelay,
    Store,
    digest,
    enqueue,
    migrate,
    migrations,
)

pytestmark = pytest.mark.integration


def _message(routing_key: str = "photo.uploaded") -> OutboxEntry:
    return OutboxEntry("tally.work", routing_key, "tally.v1.PhotoUploaded", b"\x0a\x00")


async def _enqueue(store: Store, messages: list[OutboxEntry]) -> None:
    """Messages written to the outbox in a transaction of their own."""
    async with store.transaction() as connection:
        await enqueue(connection, messages)


async def _pending_count(store: Store) -> int:
    count = await store.pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
    return int(count)


async def test_migrations_apply_once_even_when_services_start_together(database: str) -> None:
    connections = [await asyncpg.connect(database) for _ in range(3)]
    try:
        applied = await asyncio.gather(*(migrate(c) for c in connections))
        assert sorted(map(len, applied)) == [0, 0, len(migrations())]
        assert await migrate(connections[0]) == []
    finally:
        for connection in connections:
            await connection.close()


async def test_an_api_key_resolves_to_its_tenant_and_only_its_digest_is_stored(
    store: Store, database: str
) -> None:
    tenant = await store.create_tenant("greenhouse-a")
    created = await store.create_api_key(tenant.id)
    assert created.key.startswith("tly_")
    caller = await store.caller_for_api_key(created.key)
    assert caller is not None
    assert (caller.tenant, caller.key_id, caller.scope) == (tenant, created.api_key.id, "write")
    assert await store.caller_for_api_key(created.key + "x") is None

    connection = await asyncpg.connect(database)
    try:
        stored = await connection.fetchrow("SELECT * FROM api_keys")
    finally:
        await connection.close()
    assert stored is not None
    assert stored["digest"] == digest(created.key)
    assert created.key not in {str(v) for v in stored.values()}


async def test_a_revoked_key_no_longer_opens_anything(store: Store) -> None:
    tenant = await store.create_tenant("greenhouse-a")
    created = await store.create_api_key(tenant.id)
    other = await store.create_tenant("greenhouse-b")
    assert not await store.revoke_api_key(other.id, created.api_key.id)  # not theirs to revoke
    assert await store.revoke_api_key(tenant.id, created.api_key.id)
    assert await store.caller_for_api_key(created.key) is None
    assert not await store.revoke_api_key(tenant.id, created.api_key.id)


async def test_a_read_key_says_so_and_open_streams_can_ask_which_keys_still_live(
    store: Store,
) -> None:
    tenant = await store.create_tenant("greenhouse-a")
    reader = await store.create_api_key(tenant.id, scope="read")
    writer = await store.create_api_key(tenant.id)
    caller = await store.caller_for_api_key(reader.key)
    assert caller is not None
    assert caller.scope == "read"
    assert reader.api_key.scope == "read"
    await store.revoke_api_key(tenant.id, writer.api_key.id)
    unknown = uuid.uuid4()
    ids = [reader.api_key.id, writer.api_key.id, unknown]
    assert await store.live_keys(ids) == {reader.api_key.id}


async def test_a_tenants_own_limits_are_set_and_cleared_by_name(store: Store) -> None:
    tenant = await store.create_tenant("greenhouse-a")
    assert tenant.limits == {}
    await store.set_tenant_limits(tenant.id, {"read_rate": 5, "queued_slices": 1000})
    changed = await store.set_tenant_limits(tenant.id, {"read_rate": None, "write_rate": 0.5})
    assert changed.limits == {"queued_slices": 1000, "write_rate": 0.5}
    key = await store.create_api_key(tenant.id)
    caller = await store.caller_for_api_key(key.key)
    assert caller is not None
    assert caller.tenant.limits == changed.limits
    with pytest.raises(NotFoundError):
        await store.set_tenant_limits(uuid.uuid4(), {"read_rate": 1})


async def test_tenant_names_are_unique_printable_and_keys_need_a_tenant(store: Store) -> None:
    for bad in ("", " ", "a\x00b", "a\nb", "x" * 201):
        with pytest.raises(ValueError, match="control characters"):
            await store.create_tenant(bad)
    await store.create_tenant("greenhouse-a")
    with pytest.raises(ConflictError):
        await store.create_tenant("greenhouse-a")
    with pytest.raises(NotFoundError):
        await store.create_api_key(uuid.uuid4())


async def test_another_tenants_sessions_are_invisible(store: Store) -> None:
    a = await store.create_tenant("a")
    b = await store.create_tenant("b")
    session = await store.create_session(a.id, "tray 7", {"slice_size": 512})

    assert await store.get_session(a.id, session.id) == session
    assert session.params == {"slice_size": 512}
    assert await store.get_session(b.id, session.id) is None
    assert await store.list_sessions(b.id) == []


async def test_relays_sharing_the_outbox_claim_each_message_once(store: Store) -> None:
    """Two relays at once (the upload service's and the orchestrator's, say) never hold the
    same message: what one has claimed, the other skips."""
    await _enqueue(store, [_message() for _ in range(5)])
    async with store.claim_pending(limit=3) as first, store.claim_pending() as second:
        ids = [p.id for p in first.messages], [p.id for p in second.messages]
        assert (len(ids[0]), len(ids[1])) == (3, 2)
        assert not set(ids[0]) & set(ids[1])
        first.sent.extend(ids[0])  # the second relay publishes nothing: its two stay pending
    assert await _pending_count(store) == 2

    published: list[bytes] = []

    async def publish(*args: Any, **_: Any) -> None:
        published.append(args[3])

    relays = [OutboxRelay(store, publish, interval_s=1) for _ in range(2)]
    assert sum(await asyncio.gather(*(r.drain() for r in relays))) == 2
    assert len(published) == 2
    assert await _pending_count(store) == 0


async def test_sessions_list_newest_first(store: Store) -> None:
    tenant = await store.create_tenant("a")
    first = await store.create_session(tenant.id, "first")
    second = await store.create_session(tenant.id, "second")
    assert [s.id for s in await store.list_sessions(tenant.id)] == [second.id, first.id]


def test_the_cli_migrates_and_then_has_nothing_to_do(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from tally_db.cli import main

    assert main(["migrate", "--dsn", database]) == 0
    versions = [m.version for m in migrations()]
    assert f"applied migrations {versions}" in capsys.readouterr().out
    assert main(["migrate", "--dsn", database]) == 0
    assert "up to date" in capsys.readouterr().out


async def test_the_relay_publishes_pending_messages_in_order_and_retries_failures(
    store: Store,
) -> None:
    await _enqueue(store, [_message("first"), _message("second"), _message("third")])
    sent: list[str] = []
    failures = iter([False, True, False, False])  # the broker refuses the second attempt

    async def publish(
        exchange: str,
        routing_key: str,
        message_type: str,
        payload: bytes,
        headers: dict[str, str] | None = None,
    ) -> None:
        if next(failures):
            raise ConnectionError("broker away")
        sent.append(routing_key)

    relay = OutboxRelay(store, publish, interval_s=0.05)
    with pytest.raises(ConnectionError):
        await relay.drain()
    assert sent == ["first"]  # published and marked before the failure
    assert await relay.drain() == 2
    assert sent == ["first", "second", "third"]
    assert await _pending_count(store) == 0
