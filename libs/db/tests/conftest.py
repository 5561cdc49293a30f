from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from tally_db import Store

ADMIN_DSN = os.environ.get("TALLY_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def _dsn_for(database: str) -> str:
    return ADMIN_DSN.rsplit("/", 1)[0] + f"/{database}"


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    import asyncio

    name = f"tally_test_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(ADMIN_DSN)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield _dsn_for(name)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def store(database: str) -> AsyncIterator[Store]:
    async with Store.open(database) as opened:
        yield opened
