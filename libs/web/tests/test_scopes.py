"""A read key sees everything of its tenant and changes nothing; a write key does both."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI

from tally_db import Caller, Tenant
from tally_web import CallerCache, CurrentTenant, WritingTenant, install_error_handlers

TENANT = Tenant(uuid.uuid4(), "a", datetime.now(UTC))
KEYS = {
    "tly_read": Caller(TENANT, uuid.uuid4(), "read"),
    "tly_write": Caller(TENANT, uuid.uuid4(), "write"),
}


class Lookup:
    async def caller_for_api_key(self, key: str) -> Caller | None:
        return KEYS.get(key)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_error_handlers(app)
    app.state.callers = CallerCache(Lookup())

    @app.get("/things")
    async def read(tenant: CurrentTenant) -> dict[str, str]:
        return {"tenant": str(tenant.id)}

    @app.post("/things")
    async def write(tenant: WritingTenant) -> dict[str, str]:
        return {"tenant": str(tenant.id)}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_a_read_key_reads_and_is_refused_a_write(http: httpx.AsyncClient) -> None:
    assert (await http.get("/things", headers=_auth("tly_read"))).status_code == 200
    refused = await http.post("/things", headers=_auth("tly_read"))
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "insufficient_scope"


async def test_a_write_key_does_both(http: httpx.AsyncClient) -> None:
    assert (await http.get("/things", headers=_auth("tly_write"))).status_code == 200
    assert (await http.post("/things", headers=_auth("tly_write"))).status_code == 200


async def test_an_unknown_key_is_401_whatever_it_asks(http: httpx.AsyncClient) -> None:
    for response in (
        await http.get("/things", headers=_auth("tly_nope")),
        await http.post("/things"),
    ):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthenticated"
