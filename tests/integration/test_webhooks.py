"""Webhooks end to end but for the pipeline: endpoints registered through the real gateway app,
events recorded by the orchestrator's own transactions on real PostgreSQL, sent by the real
sender over real HTTP to a receiver on 127.0.0.1, signatures checked by an implementation of
the specification of the test's own (tests/webhook_receiver.py)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import ssl
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from tests.eventually import eventually_async
from tests.gateway_app import gateway_settings, serving
from tests.webhook_receiver import Answer, Received, Receiver, signatures_valid

from tally_bus import Topology
from tally_client import AsyncTally, WebhookVerificationError, verify_webhook
from tally_db import Job, Store
from tally_orchestrator import webhooks
from tally_orchestrator._records import Records
from tally_orchestrator._webhook_sender import Sender
from tally_orchestrator.config import WebhookSettings
from tally_upload._records import NewJob, add_jobs

pytestmark = pytest.mark.integration
ALL_EVENTS = ["job.completed", "job.failed", "job.cancelled", "session.completed"]
SCHEDULE = (0.0, 0.5, 1.0)  # compressed: the spec's 5 s, 5 min, … in a test's time
BIN = Path(__file__).resolve().parents[2] / ".venv" / "bin"


@dataclass
class World:
    http: httpx.AsyncClient
    store: Store
    records: Records
    database: str
    key: str
    read_key: str
    other_key: str
    tenant_id: uuid.UUID
    session_id: uuid.UUID
    jobs: list[Job]

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}

    async def register(self, url: str, events: list[str] | None = None) -> dict[str, Any]:
        response = await self.http.post(
            "/v1/webhooks", json={"url": url, "events": events or ALL_EVENTS}, headers=self.auth()
        )
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def get(self, path: str, key: str | None = None) -> dict[str, Any]:
        response = await self.http.get(path, headers=self.auth(key))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def complete(self, job: Job, counts: dict[str, int] | None = None) -> None:
        counts = counts if counts is not None else {"seedling": 3, "weed": 1}
        done = await self.records.complete_job(
            self.tenant_id, job.id, counts, sum(counts.values()), f"{job.id}/result.json", [], []
        )
        assert done

    async def deliveries(self, webhook_id: str) -> list[dict[str, Any]]:
        page = await self.get(f"/v1/webhooks/{webhook_id}/deliveries")
        found: list[dict[str, Any]] = page["deliveries"]
        return found


def sender_settings(database: str, **overrides: Any) -> WebhookSettings:
    fields: dict[str, Any] = {
        "database_url": SecretStr(database),
        "webhook_allow_hosts": "127.0.0.1",
        "webhook_retry_schedule_s": ",".join(map(str, SCHEDULE)),
        "webhook_jitter": 0.0,
        "webhook_poll_s": 0.1,
        "webhook_timeout_s": 5.0,
    }
    return WebhookSettings(**(fields | overrides))


@contextlib.asynccontextmanager
async def sending(
    store: Store, settings: WebhookSettings, verify: ssl.SSLContext | bool = True
) -> AsyncIterator[Sender]:
    """The sender, running in this test's loop until the block ends."""
    stop = asyncio.Event()
    async with webhooks.client(verify) as client:
        sender = Sender(store, settings, client)
        task = asyncio.create_task(sender.run(stop))
        try:
            yield sender
        finally:
            stop.set()
            await task


async def arrivals(receiver: Receiver, count: int, timeout_s: float = 30) -> list[Received]:
    """The receiver's requests once `count` have arrived (waited for off the event loop)."""
    return await asyncio.to_thread(receiver.wait_for, count, timeout_s)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@contextlib.asynccontextmanager
async def gateway(
    database: str, s3_endpoint: str, amqp_url: str, **overrides: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Topology]]:
    bucket = f"wh-{uuid.uuid4().hex[:10]}"
    settings = gateway_settings(database, s3_endpoint, amqp_url, bucket, **overrides)
    async with serving(settings) as (_, http):
        yield http, settings.topology


@pytest.fixture
async def world(database: str, s3_endpoint: str, amqp_url: str) -> AsyncIterator[World]:
    async with Store.open(database) as store:
        a, b = await store.create_tenant("a"), await store.create_tenant("b")
        key = (await store.create_api_key(a.id)).key
        read_key = (await store.create_api_key(a.id, "read")).key
        other_key = (await store.create_api_key(b.id)).key
        session = await store.create_session(a.id, "tray 9")
        jobs = await add_jobs(
            store,
            [
                NewJob(a.id, session.id, f"{n}.jpg", f"{a.id}/{session.id}/{n}", 4000, 3000)
                for n in range(3)
            ],
            [],
        )
        overrides = {"webhook_allow_hosts": "127.0.0.1,localhost", "webhook_max_endpoints": 3}
        async with gateway(database, s3_endpoint, amqp_url, **overrides) as (http, topology):
            yield World(
                http,
                store,
                Records(store, topology),  # its events go to the gateway's bus: they exist
                database,
                key,
                read_key,
                other_key,
                a.id,
                session.id,
                jobs,
            )


async def test_a_session_of_three_photos_sends_each_final_job_and_one_session_completed(
    world: World, receiver: Receiver
) -> None:
    created = await world.register(receiver.url())
    assert created["secret"].startswith("whsec_")
    assert created["enabled"]
    one, two, three = world.jobs
    async with sending(world.store, sender_settings(world.database)):
        await world.complete(one, {"seedling": 3, "weed": 1})
        await world.records.fail_job(world.tenant_id, two.id, "unreadable", "bad photo", [])
        await world.records.cancel_jobs(world.tenant_id, world.session_id, three.id, "asked")
        got = await arrivals(receiver, 4)
    events = {r.event["type"]: r for r in got}
    assert sorted(events) == sorted(ALL_EVENTS)  # each once
    for request in got:
        assert signatures_valid(created["secret"], request) == [True]
        assert request.headers["webhook-id"].startswith("msg_")
        assert request.headers["content-type"] == "application/json"
    completed = events["job.completed"].event["data"]
    assert (completed["job_id"], completed["status"]) == (str(one.id), "completed")
    assert completed["counts"] == {"seedling": 3, "weed": 1}
    assert completed["detections"] == 4
    assert completed["filename"] == one.filename
    assert completed["session_id"] == str(one.session_id)
    assert completed["result_url"] == f"/v1/jobs/{one.id}/result"
    failed = events["job.failed"].event["data"]
    assert (failed["job_id"], failed["error_code"]) == (str(two.id), "unreadable")
    assert events["job.cancelled"].event["data"]["job_id"] == str(three.id)
    session = events["session.completed"].event
    assert session["data"]["session_id"] == str(world.session_id)
    assert session["data"]["summary"] == {"total": 3, "completed": 1, "failed": 1, "cancelled": 1}
    assert session["data"]["counts"] == {"seedling": 3, "weed": 1}
    assert session["timestamp"]
    assert session["data"]["name"] == "tray 9"
    deliveries = await world.deliveries(created["webhook_id"])
    assert {d["status"] for d in deliveries} == {"succeeded"}
    assert len(deliveries) == 4


async def test_a_receiver_failing_twice_gets_the_same_event_three_times_on_the_schedule(
    world: World, receiver: Receiver
) -> None:
    created = await world.register(receiver.url(), ["job.completed"])
    receiver.script = [Answer(500, body=b"boom"), Answer(503)]
    async with sending(world.store, sender_settings(world.database)):
        await world.complete(world.jobs[0])
        got = await arrivals(receiver, 3)
        await eventually_async(
            lambda: world.deliveries(created["webhook_id"]),
            until=lambda d: d[0]["status"] == "succeeded",
        )
    assert len({r.headers["webhook-id"] for r in got}) == 1  # the idempotency key
    assert len({r.body for r in got}) == 1  # the same bytes, signed again at each attempt
    assert all(signatures_valid(created["secret"], r) == [True] for r in got)
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(got)]
    assert gaps[0] >= SCHEDULE[1]
    assert gaps[1] >= SCHEDULE[2]
    stamps = [int(r.headers["webhook-timestamp"]) for r in got]
    assert stamps == sorted(stamps)  # each attempt's own time
    (delivery,) = await world.deliveries(created["webhook_id"])
    attempts = delivery["attempts"]
    assert [a["status_code"] for a in attempts] == [500, 503, 200]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert attempts[0]["error"] == "HTTP 500: boom"
    assert attempts[2]["error"] is None
    assert delivery["event_id"] == got[0].headers["webhook-id"]
    assert delivery["next_attempt_at"] is None


async def test_a_delivery_that_fails_every_attempt_is_given_up_after_the_schedule(
    world: World, receiver: Receiver
) -> None:
    created = await world.register(receiver.url(), ["job.completed"])
    receiver.then = Answer(500)
    async with sending(world.store, sender_settings(world.database)):
        await world.complete(world.jobs[0])
        await arrivals(receiver, len(SCHEDULE))
        (delivery,) = await eventually_async(
            lambda: world.deliveries(created["webhook_id"]),
            until=lambda d: d[0]["status"] == "failed",
        )
    assert len(delivery["attempts"]) == len(SCHEDULE)
    assert delivery["next_attempt_at"] is None
    endpoint = await world.get(f"/v1/webhooks/{created['webhook_id']}")
    assert endpoint["enabled"]
    assert endpoint["failing_since"] is not None


async def test_410_gone_disables_the_endpoint_and_says_why(
    world: World, receiver: Receiver
) -> None:
    created = await world.register(receiver.url(), ["job.completed"])
    receiver.script = [Answer(410)]
    async with sending(world.store, sender_settings(world.database)):
        await world.complete(world.jobs[0])
        await arrivals(receiver, 1)
        endpoint = await eventually_async(
            lambda: world.get(f"/v1/webhooks/{created['webhook_id']}"),
            until=lambda e: not e["enabled"],
        )
        assert "410" in endpoint["disabled_reason"]
        await world.complete(world.jobs[1])  # nothing is recorded for a disabled endpoint
        (delivery,) = await world.deliveries(created["webhook_id"])
        assert delivery["status"] == "failed"
        enabled = await world.http.patch(
            f"/v1/webhooks/{created['webhook_id']}", json={"enabled": True}, headers=world.auth()
        )
        assert enabled.json()["enabled"]
        assert enabled.json()["disabled_reason"] is None
        await world.complete(world.jobs[2])
        got = await arrivals(receiver, 2)
    assert got[1].event["data"]["job_id"] == str(world.jobs[2].id)


async def test_an_endpoint_failing_for_longer_than_allowed_is_disabled(
    world: World, receiver: Receiver
) -> None:
    created = await world.register(receiver.url(), ["job.completed"])
    receiver.then = Answer(500)
    settings = sender_settings(world.database, webhook_disable_after_s=0.4)
    async with sending(world.store, settings):
        await world.complete(world.jobs[0])
        endpoint = await eventually_async(
            lambda: world.get(f"/v1/webhooks/{created['webhook_id']}"),
            until=lambda e: not e["enabled"],
        )
    assert "every attempt failed" in endpoint["disabled_reason"]
    assert "HTTP 500" in endpoint["disabled_reason"]


async def test_retry_after_of_a_429_is_honoured(world: World, receiver: Receiver) -> None:
    await world.register(receiver.url(), ["job.completed"])
    receiver.script = [Answer(429, {"Retry-After": "2"})]
    # Retry-After is honoured up to the schedule's longest delay (a receiver cannot park its
    # deliveries for ever): 5 s here.
    settings = sender_settings(world.database, webhook_retry_schedule_s="0,0.5,5")
    async with sending(world.store, settings):
        await world.complete(world.jobs[0])
        first, second = await arrivals(receiver, 2)
    assert second.at - first.at >= 2.0 > SCHEDULE[1]


async def test_a_redirect_is_not_followed_and_counts_as_a_failure(
    world: World, receiver: Receiver
) -> None:
    created = await world.register(receiver.url(), ["job.completed"])
    receiver.script = [Answer(307, {"Location": receiver.url("/elsewhere")})]
    async with sending(world.store, sender_settings(world.database)):
        await world.complete(world.jobs[0])
        got = await arrivals(receiver, 2)
    assert [r.path for r in got] == ["/hook", "/hook"]  # retried where it was, not redirected
    (delivery,) = await world.deliveries(created["webhook_id"])
    assert [a["status_code"] for a in delivery["attempts"]] == [307, 200]


async def test_a_long_answer_is_read_only_up_to_the_cap(world: World, receiver: Receiver) -> None:
    created = await world.register(receiver.url(), ["job.completed"])
    receiver.script = [Answer(500, body=b"x" * 5_000_000)]
    async with sending(world.store, sender_settings(world.database, webhook_response_cap=64)):
        await world.complete(world.jobs[0])
        await arrivals(receiver, 2)
        (delivery,) = await eventually_async(
            lambda: world.deliveries(created["webhook_id"]),
            until=lambda d: d[0]["status"] == "succeeded",
        )
    assert delivery["attempts"][0]["error"] == "HTTP 500: " + "x" * 64


async def test_a_rotated_secret_and_the_one_before_it_both_sign_during_the_grace(
    world: World, receiver: Receiver
) -> None:
    created = await world.register(receiver.url(), ["job.completed"])
    rotated = await world.http.post(
        f"/v1/webhooks/{created['webhook_id']}/rotate-secret", headers=world.auth()
    )
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new != created["secret"]
    assert rotated.json()["previous_secret_expires_at"]
    async with sending(world.store, sender_settings(world.database)):
        await world.complete(world.jobs[0])
        (got,) = await arrivals(receiver, 1)
    assert sorted(signatures_valid(new, got)) == [False, True]
    assert sorted(signatures_valid(created["secret"], got)) == [False, True]


async def test_a_slow_receiver_does_not_hold_up_another_endpoint(
    world: World, receiver: Receiver
) -> None:
    with Receiver() as slow:
        slow.then = Answer(200, delay_s=1.5)
        await world.register(slow.url(), ["job.completed"])
        await world.register(receiver.url(), ["job.completed"])
        settings = sender_settings(world.database, webhook_endpoint_concurrency=1)
        async with sending(world.store, settings):
            for job in world.jobs:
                await world.complete(job)
            fast = await arrivals(receiver, 3)
            assert len(slow.received) < 3  # one at a time there; the others went on meanwhile
            await asyncio.to_thread(slow.wait_for, 3)
    assert {r.event["data"]["job_id"] for r in fast} == {str(j.id) for j in world.jobs}


async def test_a_replay_sends_the_event_again_with_the_same_id(
    world: World, receiver: Receiver
) -> None:
    created = await world.register(receiver.url(), ["job.completed"])
    async with sending(world.store, sender_settings(world.database)):
        await world.complete(world.jobs[0])
        await arrivals(receiver, 1)
        (delivery,) = await eventually_async(
            lambda: world.deliveries(created["webhook_id"]),
            until=lambda d: d[0]["status"] == "succeeded",
        )
        path = f"/v1/webhooks/{created['webhook_id']}/deliveries/{delivery['delivery_id']}/replay"
        replayed = await world.http.post(path, headers=world.auth())
        assert replayed.status_code == 202, replayed.text
        first, again = await arrivals(receiver, 2)
    assert first.headers["webhook-id"] == again.headers["webhook-id"] == delivery["event_id"]
    (after,) = await eventually_async(
        lambda: world.deliveries(created["webhook_id"]), until=lambda d: len(d[0]["attempts"]) == 2
    )
    assert after["status"] == "succeeded"


async def test_the_address_is_checked_again_before_every_attempt(
    world: World, receiver: Receiver
) -> None:
    """Allowed when registered, not any more when sent (as a name that now resolves to an
    internal address would be): refused, and nothing is sent."""
    created = await world.register(receiver.url(), ["job.completed"])
    async with sending(world.store, sender_settings(world.database, webhook_allow_hosts="")):
        await world.complete(world.jobs[0])
        (delivery,) = await eventually_async(
            lambda: world.deliveries(created["webhook_id"]), until=lambda d: d[0]["attempts"]
        )
    attempt = delivery["attempts"][0]
    assert attempt["status_code"] is None
    assert attempt["error"].startswith("refused: ")
    assert "127.0.0.1" in attempt["error"]
    assert receiver.received == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/hook",
        "http://192.168.1.10/hook",
        "http://localhost:8080/hook",  # a name that resolves to loopback
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
        "ftp://example.com/hook",
        "http://user:pw@example.com/hook",
        "not a url",
    ],
)
async def test_internal_addresses_are_refused_at_registration_without_the_setting(
    database: str, s3_endpoint: str, amqp_url: str, url: str
) -> None:
    async with Store.open(database) as store:
        tenant = await store.create_tenant("a")
        key = (await store.create_api_key(tenant.id)).key
    async with gateway(database, s3_endpoint, amqp_url) as (http, _):
        response = await http.post(
            "/v1/webhooks",
            json={"url": url, "events": ["job.completed"]},
            headers={"Authorization": f"Bearer {key}"},
        )
        listed = await http.get("/v1/webhooks", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_webhook_url"
    assert listed.json() == {"webhooks": []}


async def test_bad_requests_get_the_envelope_and_change_nothing(
    world: World, receiver: Receiver
) -> None:
    created = await world.register(receiver.url(), ["job.completed"])
    hook = f"/v1/webhooks/{created['webhook_id']}"
    bad = [
        ("POST", "/v1/webhooks", {"url": receiver.url(), "events": ["job.done"]}, 422),
        ("POST", "/v1/webhooks", {"url": receiver.url(), "events": []}, 422),
        ("POST", "/v1/webhooks", {"url": receiver.url()}, 422),
        ("POST", "/v1/webhooks", {"url": receiver.url(), "events": ["job.failed"], "x": 1}, 422),
        ("POST", "/v1/webhooks", {"url": "h" * 3000, "events": ["job.failed"]}, 422),
        ("PATCH", hook, {"enabled": "perhaps"}, 422),
        ("PATCH", hook, {"url": "http://10.1.2.3/"}, 422),
        ("GET", f"{hook}/deliveries?cursor=nonsense", None, 422),
        ("GET", f"{hook}/deliveries?limit=0", None, 422),
        ("GET", "/v1/webhooks/not-a-uuid", None, 422),
        ("POST", f"{hook}/deliveries/{uuid.uuid4()}/replay", None, 404),
        ("GET", f"/v1/webhooks/{uuid.uuid4()}", None, 404),
    ]
    for method, path, body, status in bad:
        response = await world.http.request(method, path, json=body, headers=world.auth())
        assert response.status_code == status, (method, path, response.text)
        assert response.json()["error"]["code"], response.text
    # Another tenant's webhook is not there for it; a read key changes nothing.
    for method in ("GET", "PATCH", "DELETE"):
        response = await world.http.request(
            method,
            hook,
            json={} if method == "PATCH" else None,
            headers=world.auth(world.other_key),
        )
        assert response.status_code == 404, (method, response.text)
    other = await world.http.get(f"{hook}/deliveries", headers=world.auth(world.other_key))
    assert other.status_code == 404
    for method, path in (("DELETE", hook), ("POST", f"{hook}/rotate-secret")):
        response = await world.http.request(method, path, headers=world.auth(world.read_key))
        assert response.status_code == 403, response.text
    assert (await world.get(hook, world.read_key))["url"] == receiver.url()
    # At most webhook_max_endpoints (3 here) per tenant.
    await world.register(receiver.url("/2"))
    await world.register(receiver.url("/3"))
    fourth = await world.http.post(
        "/v1/webhooks", json={"url": receiver.url("/4"), "events": ALL_EVENTS}, headers=world.auth()
    )
    assert fourth.status_code == 409
    assert fourth.json()["error"]["code"] == "too_many_webhooks"
    listed = await world.get("/v1/webhooks")
    assert len(listed["webhooks"]) == 3
    assert all("secret" not in w for w in listed["webhooks"])
    assert (await world.http.delete(hook, headers=world.auth())).status_code == 204
    assert (await world.http.get(hook, headers=world.auth())).status_code == 404


async def test_a_disabled_endpoint_cannot_be_replayed_until_enabled(
    world: World, receiver: Receiver
) -> None:
    created = await world.register(receiver.url(), ["job.completed"])
    hook = f"/v1/webhooks/{created['webhook_id']}"
    async with sending(world.store, sender_settings(world.database)):
        await world.complete(world.jobs[0])
        (delivery,) = await eventually_async(
            lambda: world.deliveries(created["webhook_id"]),
            until=lambda d: d[0]["status"] == "succeeded",
        )
    paused = await world.http.patch(hook, json={"enabled": False}, headers=world.auth())
    assert paused.json()["disabled_reason"] == "disabled on request"
    replay = await world.http.post(
        f"{hook}/deliveries/{delivery['delivery_id']}/replay", headers=world.auth()
    )
    assert replay.status_code == 409
    assert replay.json()["error"]["code"] == "webhook_disabled"


def _start_sender(database: str, **settings: str) -> subprocess.Popen[bytes]:
    env = (
        os.environ
        | settings
        | {
            "TALLY_DATABASE_URL": database,
            "TALLY_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
            "TALLY_WEBHOOK_RETRY_SCHEDULE_S": "0,2",
            "TALLY_WEBHOOK_JITTER": "0",
            "TALLY_WEBHOOK_POLL_S": "0.2",
        }
    )
    return subprocess.Popen([str(BIN / "tally-webhooks")], env=env)


@pytest.mark.reliability
async def test_killing_the_sender_between_attempts_loses_nothing(
    world: World, receiver: Receiver
) -> None:
    created = await world.register(receiver.url(), ["job.completed"])
    receiver.script = [Answer(500)]
    sender = _start_sender(world.database)
    try:
        await world.complete(world.jobs[0])
        (first,) = await arrivals(receiver, 1)
        await eventually_async(
            lambda: world.deliveries(created["webhook_id"]),
            until=lambda d: len(d[0]["attempts"]) == 1,
        )
        sender.send_signal(signal.SIGKILL)  # mid-retry: the next attempt is due in 2 s
        await asyncio.to_thread(sender.wait, 10)
        sender = _start_sender(world.database)
        _, second = await arrivals(receiver, 2)
    finally:
        sender.terminate()
        await asyncio.to_thread(sender.wait, 30)
    assert second.headers["webhook-id"] == first.headers["webhook-id"]
    assert signatures_valid(created["secret"], second) == [True]
    (delivery,) = await eventually_async(
        lambda: world.deliveries(created["webhook_id"]),
        until=lambda d: d[0]["status"] == "succeeded",
    )
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 200]


@pytest.mark.reliability
async def test_killing_the_sender_during_an_attempt_sends_it_again_once_the_lease_is_out(
    world: World, receiver: Receiver
) -> None:
    created = await world.register(receiver.url(), ["job.completed"])
    receiver.script = [Answer(200, delay_s=10)]  # the sender dies while waiting for this one
    # A lease of 2 × 4 + 5 s: long enough to kill it mid-attempt, short enough for a test.
    sender = _start_sender(world.database, TALLY_WEBHOOK_TIMEOUT_S="4")
    try:
        await world.complete(world.jobs[0])
        (first,) = await arrivals(receiver, 1)
        sender.send_signal(signal.SIGKILL)
        await asyncio.to_thread(sender.wait, 10)
        sender = _start_sender(world.database)
        _, second = await arrivals(receiver, 2, timeout_s=60)
    finally:
        sender.terminate()
        await asyncio.to_thread(sender.wait, 30)
    assert second.headers["webhook-id"] == first.headers["webhook-id"]
    (delivery,) = await eventually_async(
        lambda: world.deliveries(created["webhook_id"]),
        until=lambda d: d[0]["status"] == "succeeded",
    )
    assert [a["status_code"] for a in delivery["attempts"]] == [200]  # the one that finished


async def test_the_async_sdk_registers_reads_the_log_and_verifies_what_arrives(
    world: World, receiver: Receiver
) -> None:
    transport = world.http._transport  # the gateway app itself
    async with AsyncTally("http://gateway", world.key, transport=transport) as tally:
        created = await tally.create_webhook(receiver.url(), ["job.completed"], "sdk")
        assert [w.webhook_id for w in await tally.list_webhooks()] == [created.webhook_id]
        async with sending(world.store, sender_settings(world.database)):
            await world.complete(world.jobs[0])
            (got,) = await arrivals(receiver, 1)
            payload = verify_webhook(created.secret, got.headers, got.body)
            assert payload["data"]["job_id"] == str(world.jobs[0].id)
            page = await eventually_async(
                lambda: tally.deliveries(created.webhook_id),
                until=lambda p: p.deliveries[0].status == "succeeded",
            )
            (delivery,) = page.deliveries
            assert delivery.event_id == got.headers["webhook-id"]
            await tally.replay(created.webhook_id, delivery.delivery_id)
            await arrivals(receiver, 2)
        rotated = await tally.rotate_webhook_secret(created.webhook_id)
        assert rotated.secret != created.secret
        with pytest.raises(WebhookVerificationError):
            verify_webhook(rotated.secret, got.headers, got.body)  # signed before the rotation
        await tally.delete_webhook(created.webhook_id)
        assert await tally.list_webhooks() == []


@pytest.fixture(scope="module")
def localhost_tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for the name `localhost` (not for 127.0.0.1), and its key."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_https_goes_to_the_checked_address_with_the_name_for_tls(
    world: World, localhost_tls: tuple[Path, Path]
) -> None:
    """The request is sent to the address the name resolved to and was checked (127.0.0.1),
    while TLS (SNI, the certificate's check) and `Host` still use the name: a certificate for
    `localhost` verifies, and the receiver sees `Host: localhost:port`."""
    cert, key = localhost_tls
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    trusted = ssl.create_default_context(cafile=str(cert))
    with Receiver(tls=server) as receiver:
        created = await world.register(receiver.url(host="localhost"), ["job.completed"])
        settings = sender_settings(world.database, webhook_allow_hosts="localhost")
        async with sending(world.store, settings, verify=trusted):
            await world.complete(world.jobs[0])
            (got,) = await arrivals(receiver, 1)
            (delivery,) = await eventually_async(
                lambda: world.deliveries(created["webhook_id"]),
                until=lambda d: d[0]["status"] == "succeeded",
            )
    assert got.headers["host"] == f"localhost:{receiver.port}"
    assert signatures_valid(created["secret"], got) == [True]
    assert delivery["attempts"][0]["status_code"] == 200


async def test_a_certificate_that_does_not_verify_fails_the_attempt(
    world: World, localhost_tls: tuple[Path, Path]
) -> None:
    cert, key = localhost_tls
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    with Receiver(tls=server) as receiver:
        created = await world.register(receiver.url(host="localhost"), ["job.completed"])
        settings = sender_settings(world.database, webhook_allow_hosts="localhost")
        async with sending(world.store, settings):  # the system's authorities only
            await world.complete(world.jobs[0])
            (delivery,) = await eventually_async(
                lambda: world.deliveries(created["webhook_id"]),
                until=lambda d: d[0]["attempts"],
            )
    attempt = delivery["attempts"][0]
    assert attempt["status_code"] is None
    assert "CERTIFICATE_VERIFY_FAILED" in attempt["error"]
    assert receiver.received == []
