"""The wait model in the orchestrator, on real PostgreSQL and RabbitMQ: what it reads and the
SessionWaits it sends when the world changes."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest
from pydantic import SecretStr

from tally_bus import Topology, decode
from tally_contracts.v1 import Cancel, DetectionParams, JobRef, PhotoUploaded, SessionWait
from tally_db import Store
from tally_orchestrator.config import Settings
from tally_orchestrator.deps import Deps
from tally_orchestrator.handlers import handle_cancel, handle_photo_uploaded
from tally_stack.local_s3 import MOTO_ACCESS_KEY, MOTO_SECRET_KEY
from tally_upload._records import NewJob, add_jobs

pytestmark = pytest.mark.integration

PARAMS = DetectionParams(slice_size=512, overlap=0.25, confidence=0.35)


@pytest.fixture
async def deps(database: str, amqp_url: str, s3_endpoint: str) -> AsyncIterator[Deps]:
    topology = Topology(prefix=f"test-{uuid.uuid4().hex[:10]}")
    settings = Settings(
        database_url=SecretStr(database),
        amqp_url=SecretStr(amqp_url),
        bus_prefix=topology.prefix,
        s3_endpoint_url=s3_endpoint,
        s3_bucket=f"waits-{uuid.uuid4().hex[:10]}",
        s3_access_key_id=MOTO_ACCESS_KEY,
        s3_secret_access_key=SecretStr(MOTO_SECRET_KEY),
    )
    async with Deps.open(settings) as deps:
        yield deps
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        await topology.delete(await connection.channel())


async def _upload(store: Store, tenant_id: uuid.UUID, photos: int) -> list[PhotoUploaded]:
    """A session of `photos` photos of 2000 × 1500 (20 slices of 512 at 0.25 overlap each)."""
    session = await store.create_session(tenant_id)
    jobs = await add_jobs(
        store,
        [
            NewJob(tenant_id, session.id, f"{n}.jpg", f"k/{n}.jpg", 2000, 1500, planned_slices=20)
            for n in range(photos)
        ],
        [],
    )
    return [
        PhotoUploaded(
            job=JobRef(tenant_id=str(tenant_id), session_id=str(session.id), job_id=str(j.id)),
            filename=j.filename,
            object_key=j.object_key,
            width=2000,
            height=1500,
            params=PARAMS,
        )
        for j in jobs
    ]


async def _sent(deps: Deps) -> dict[str, SessionWait]:
    """The SessionWaits sent since the last call, by session (the last one of each)."""
    channel = await deps.bus.connection.channel()
    queue = await channel.get_queue(deps.bus.topology.waits_queue.name, ensure=False)
    sent: dict[str, SessionWait] = {}
    while (message := await queue.get(fail=False, no_ack=True)) is not None:
        wait = decode(message, SessionWait)
        sent[wait.session.session_id] = wait
    await channel.close()
    return sent


def _measured(deps: Deps, slices_done: int, rate: float, detectors: int = 1) -> None:
    """The detectors have done `rate` slices/s for the last 10 s, up to `slices_done`."""
    now = time.monotonic()
    for second in range(10, 0, -1):
        deps.waits.window.add(now - second, int(slices_done - rate * second), detectors=detectors)
    deps.waits.window.add(now - 0.001, slices_done, detectors=detectors)


async def test_a_second_tenant_halves_the_first_ones_rate_at_the_next_update(deps: Deps) -> None:
    channel = await deps.bus.connection.channel()  # one detector consuming the queue
    detector = await channel.get_queue(deps.bus.topology.chunks_queue.name, ensure=False)
    await detector.consume(_hold)
    a = await deps.store.create_tenant("a")
    first = await _upload(deps.store, a.id, 10)  # 200 slices
    for photo in first:
        await handle_photo_uploaded(photo, deps)
    _measured(deps, 0, rate=20.0)

    alone = (await _sent_after_publish(deps))[first[0].job.session_id]
    assert alone.wait.reason == ""
    assert alone.wait.seconds == pytest.approx(200 / 20, rel=0.05)
    assert alone.wait.low < alone.wait.seconds < alone.wait.high
    by_job = {j.job_id: j.wait.seconds for j in alone.jobs}
    assert by_job[first[0].job.job_id] == pytest.approx(20 / 20, rel=0.05)  # the first photo
    assert by_job[first[4].job.job_id] == pytest.approx(100 / 20, rel=0.05)  # the fifth

    b = await deps.store.create_tenant("b")
    second = await _upload(deps.store, b.id, 20)  # 400 slices: more than a has left
    await handle_photo_uploaded(second[0], deps)  # b's first photo is planned: b has arrived
    shared = (await _sent_after_publish(deps))[first[0].job.session_id]
    # Both tenants have work for the whole of a's wait: a's share halves, its wait doubles.
    assert shared.wait.seconds == pytest.approx(2 * alone.wait.seconds, rel=0.05)
    assert shared.wait.high / shared.wait.low > alone.wait.high / alone.wait.low

    everything = JobRef(tenant_id=str(b.id), session_id=second[0].job.session_id)
    await handle_cancel(Cancel(job=everything, reason="changed my mind"), deps)
    left = (await _sent_after_publish(deps))[first[0].job.session_id]
    assert left.wait.seconds == pytest.approx(alone.wait.seconds, rel=0.05)  # b left
    await channel.close()


async def test_chunks_sent_before_a_second_tenant_arrives_are_not_slowed(deps: Deps) -> None:
    channel = await deps.bus.connection.channel()  # one detector consuming the queue
    detector = await channel.get_queue(deps.bus.topology.chunks_queue.name, ensure=False)
    await detector.consume(_hold)
    a = await deps.store.create_tenant("a")
    first = await _upload(deps.store, a.id, 10)  # 200 slices, chunks of 16 and 4 per photo
    for photo in first:
        await handle_photo_uploaded(photo, deps)
    # The window of one detector (3 chunks) goes out: the first photo's 16 and 4, the second's
    # 16. The detector is half-way through the first: 8 + 4 + 16 = 28 slices out are left.
    assert await deps.dispatcher.dispatch() == 3
    assert [slices for _, slices in await deps.records.sent_chunks()] == [16, 4, 16]
    _measured(deps, 0, rate=20.0)

    alone = (await _sent_after_publish(deps))[first[0].job.session_id]
    assert alone.wait.seconds == pytest.approx((200 - 8) / 20, rel=0.05)
    first_photo = {j.job_id: j.wait.seconds for j in alone.jobs}[first[0].job.job_id]
    assert first_photo == pytest.approx((8 + 4) / 20, rel=0.05)

    b = await deps.store.create_tenant("b")
    second = await _upload(deps.store, b.id, 20)
    await handle_photo_uploaded(second[0], deps)
    shared = (await _sent_after_publish(deps))[first[0].job.session_id]
    # What is out is done first, at the whole rate, whoever arrived; the 164 slices a has not
    # sent yet go at half of it.
    assert shared.wait.seconds == pytest.approx(28 / 20 + 164 / 10, rel=0.05)
    by_job = {j.job_id: j.wait.seconds for j in shared.jobs}
    assert by_job[first[0].job.job_id] == pytest.approx(first_photo, rel=0.05)
    await channel.close()


async def test_each_read_says_when_the_newest_photo_arrived(deps: Deps) -> None:
    # Uploads share the machine with the detectors: the rate while photos arrive is measured
    # apart (RateWindow), from what the database says, so every replica sees every upload.
    a = await deps.store.create_tenant("a")
    await _upload(deps.store, a.id, 1)
    before = (await deps.waits.read()).newest_upload
    assert before is not None
    assert (await deps.waits.read()).newest_upload == before  # nothing arrived in between
    await _upload(deps.store, a.id, 2)
    after = (await deps.waits.read()).newest_upload
    assert after is not None
    assert after > before


async def _hold(message: aio_pika.abc.AbstractIncomingMessage) -> None:
    """A detector that takes chunks and never finishes one."""


async def _sent_after_publish(deps: Deps) -> dict[str, SessionWait]:
    await _sent(deps)  # what was sent before
    await deps.waits.publish()
    return await _sent(deps)
