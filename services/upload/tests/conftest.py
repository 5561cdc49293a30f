from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tally_db import Store


@pytest.fixture
async def store(database: str) -> AsyncIterator[Store]:
    async with Store.open(database) as opened:
        yield opened
