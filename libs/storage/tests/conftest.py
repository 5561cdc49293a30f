from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from tally_stack.local_s3 import MOTO_ACCESS_KEY, MOTO_SECRET_KEY
from tally_storage import ObjectStore, S3Settings


@pytest.fixture
async def store(s3_endpoint: str) -> AsyncIterator[ObjectStore]:
    settings = S3Settings(
        bucket=f"test-{uuid.uuid4().hex[:12]}",
        endpoint_url=s3_endpoint,
        access_key_id=MOTO_ACCESS_KEY,
        secret_access_key=MOTO_SECRET_KEY,
    )
    async with ObjectStore.open(settings, create_bucket=True) as opened:
        yield opened
