"""Orchestrator and detector handlers together on real Triton, PostgreSQL, RabbitMQ and S3:
a photo is planned, its chunks detected, gathered once, merged, stored and completed."""

from __future__ import annotations

import asyncio
import functools
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aio_pika
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis
from tests.eventually import eventually_async

from tally_bus import Bus, Topology, decode
from tally_contracts.sequence import FINAL as FINAL_SEQUENCE
from tally_contracts.statuses import FINAL
from tally_contracts.v1 import (
    ChunkFailure,
    ChunkResult,
    DetectChunk,
    DetectionParams,
    JobEvent,
    JobRef,
    PhotoUploaded,
    SliceBox,
)
from tally_db import Job, Store
from tally_detector import config as detector_config
from tally_detector.deps import Deps as DetectorDeps
from tally_detector.deps import PhotoCache
from tally_detector.handlers import give_up_chunk, handle_detect_chunk
from tally_gateway import _records
from tally_inference import TritonModel, count_error
from tally_orchestrator.config import Settings
from tally_orchestrator.deps import Deps
from tally_orchestrator.handlers import (
    give_up_photo,
    give_up_result,
    handle_chunk_result,
    handle_photo_uploaded,
)
from tally_stack.local_s3 import MOTO_ACCESS_KEY, MOTO_SECRET_KEY
from tally_stack.local_triton import LocalTriton
from tally_storage import ObjectStore, S3Settings
from tally_synth import PhotoSpec, render
from tally_upload._records import NewJob, add_jobs

pytestmark = pytest.mark.integration
WIDTH, HEIGHT = 2000, 1500


@dataclass
class Pipeline:
    orchestrator: Deps
    detector: DetectorDeps

    async def take(self, queue: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
        channel = await self.orchestrator.bus.connection.channel()
        q = await channel.get_queue(queue, ensure=False)
        got = []
        while (message := await q.get(fail=False, no_ack=True)) is not None:
            got.append(message)
        return got


@pytest.fixture(scope="module")
def photo() -> tuple[bytes, int]:
    data, truth = render(PhotoSpec(seed=7_777, index=0, width=WIDTH, height=HEIGHT))
    return data, sum(1 for a in truth if a.label == "seedling")


@pytest.fixture
async def pipeline(
    database: str, amqp_url: str, s3_endpoint: str, triton: LocalTriton
) -> AsyncIterator[Pipeline]:
    topology = Topology(
        prefix=f"test-{uuid.uuid4().hex[:10]}",
        chunk_retry_delays_s=(0.2, 0.4),
        work_retry_delays_s=(0.2, 0.4),
    )
    s3 = S3Settings(
        bucket=f"fan-{uuid.uuid4().hex[:10]}",
        endpoint_url=s3_endpoint,
        access_key_id=MOTO_ACCESS_KEY,
        secret_access_key=MOTO_SECRET_KEY,
    )
    async with (
        Redis.from_url("redis://127.0.0.1:6379/15") as redis,
        Store.open(database) as store,
        await Bus.connect(amqp_url, topology) as bus,
        ObjectStore.open(s3, create_bucket=True) as objects,
        TritonModel(triton.endpoints.grpc_url) as model,
    ):
        settings = Settings(
            database_url=SecretStr(database),
            amqp_url=SecretStr(amqp_url),
            bus_prefix=topology.prefix,
            chunk_slices=8,
            dispatch_min=8,
        )
        orchestrator = Deps.build(settings, store, bus, objects)  # the test's bus and topology
        detector = DetectorDeps(
            detector_config.Settings(amqp_url=SecretStr(amqp_url), bus_prefix=topology.prefix),
            bus,
            objects,
            model,
            PhotoCache(),
            redis,
        )
        yield Pipeline(orchestrator, detector)
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        await topology.delete(await connection.channel())


async def _upload(p: Pipeline, data: bytes) -> PhotoUploaded:
    store = p.orchestrator.store
    tenant = await store.create_tenant(f"t-{uuid.uuid4().hex[:6]}")
    session = await store.create_session(tenant.id)
    job_id = uuid.uuid4()
    key = f"{tenant.id}/{session.id}/{job_id}/original.jpg"
    await p.orchestrator.objects.put_bytes(key, data, "image/jpeg")
    await add_jobs(
        store, [NewJob(tenant.id, session.id, "tray.jpg", key, WIDTH, HEIGHT, id=job_id)], []
    )
    return PhotoUploaded(
        job=JobRef(tenant_id=str(tenant.id), session_id=str(session.id), job_id=str(job_id)),
        filename="tray.jpg",
        object_key=key,
        width=WIDTH,
        height=HEIGHT,
        params=DetectionParams(slice_size=512, overlap=0.25, confidence=0.35),
    )


async def test_a_photo_goes_from_plan_to_completed_result_once(
    pipeline: Pipeline, photo: tuple[bytes, int]
) -> None:
    p, topology = pipeline, pipeline.orchestrator.bus.topology
    data, true_seedlings = photo
    uploaded = await _upload(p, data)
    await handle_photo_uploaded(uploaded, p.orchestrator)
    await p.orchestrator.dispatcher.dispatch()
    await p.orchestrator.relay.drain()

    chunks = [decode(m, DetectChunk) for m in await p.take(topology.chunks_queue.name)]
    assert [len(c.slices) for c in chunks] == [8, 8, 4]  # 20 slices, whole batches of 8
    results: list[ChunkResult] = []
    for chunk in chunks:
        result = await handle_detect_chunk(chunk, p.detector)
        assert result is not None  # what the detector's consumer publishes to the orchestrator
        results.append(result)
    assert len(results) == len(chunks)
    for result in [results[0], *results, results[-1]]:  # duplicates change nothing
        await handle_chunk_result(result, p.orchestrator)
    await p.orchestrator.relay.drain()

    events = [decode(m, JobEvent) for m in await p.take(topology.events_queue.name)]
    kinds = [(e.WhichOneof("kind"), e.sequence) for e in events]
    assert kinds == [
        ("planned", 2),
        ("started", 3),  # one per chunk, from the detector
        ("started", 3),
        ("started", 3),
        ("progress", 3),
        ("progress", 4),
        ("progress", 5),
        ("completed", FINAL_SEQUENCE),
    ]
    assert [e.progress.slices_done for e in events if e.HasField("progress")] == [8, 16, 20]

    tenant_id, job_id = uuid.UUID(uploaded.job.tenant_id), uuid.UUID(uploaded.job.job_id)
    job = await _records.get_job(p.orchestrator.store, tenant_id, job_id)
    assert job is not None
    assert (job.status, job.processed, job.total) == ("completed", 20, 20)
    stored = await _records.get_result(p.orchestrator.store, tenant_id, job_id)
    assert stored is not None
    body = json.loads(await p.orchestrator.objects.get_bytes(stored["object_key"]))
    assert body["counts"] == stored["counts"] == dict(events[-1].completed.counts)
    assert len(body["detections"]) == stored["detections"]
    assert count_error(body["counts"]["seedling"], true_seedlings) <= 0.08


async def test_a_failed_chunk_fails_the_job_for_good(
    pipeline: Pipeline, photo: tuple[bytes, int]
) -> None:
    p, topology = pipeline, pipeline.orchestrator.bus.topology
    uploaded = await _upload(p, photo[0])
    await handle_photo_uploaded(uploaded, p.orchestrator)
    await p.orchestrator.dispatcher.dispatch()
    await p.orchestrator.relay.drain()
    await p.take(topology.chunks_queue.name)
    failure = ChunkResult(
        job=uploaded.job,
        chunk_index=1,
        failure=ChunkFailure(code="image_unreadable", message="truncated JPEG", retryable=False),
    )
    await handle_chunk_result(failure, p.orchestrator)
    late = ChunkResult(job=uploaded.job, chunk_index=0)
    late.detections.SetInParent()
    await handle_chunk_result(late, p.orchestrator)
    await p.orchestrator.relay.drain()

    job = await _records.get_job(
        p.orchestrator.store, uuid.UUID(uploaded.job.tenant_id), uuid.UUID(uploaded.job.job_id)
    )
    assert job is not None
    assert (job.status, job.error_code) == ("failed", "image_unreadable")
    assert job.error_message == "chunk 1: truncated JPEG"
    events = [decode(m, JobEvent) for m in await p.take(topology.events_queue.name)]
    assert [e.WhichOneof("kind") for e in events] == ["planned", "failed"]
    assert events[-1].sequence == FINAL_SEQUENCE


async def test_poison_is_retried_then_fails_only_its_own_job(
    pipeline: Pipeline, photo: tuple[bytes, int]
) -> None:
    """The services' own consumers on the real bus and Triton. A photo the orchestrator cannot
    plan (slices of 500 px: the model takes multiples of 32), and a chunk that makes inference
    raise every time (a slice larger than its slice size, sent straight to the detectors: a
    stand-in for a bug no retry can fix), are each tried 3 times; then
    their jobs fail with the reason and the messages wait in the dead-letter queues, while a
    good photo uploaded with them completes."""
    p, bus = pipeline, pipeline.orchestrator.bus
    topology, store = bus.topology, p.orchestrator.store
    good = await _upload(p, photo[0])
    unplannable = await _upload(p, photo[0])
    unplannable.params.slice_size = 500
    undetectable = await _upload(p, photo[0])
    tenant_id = uuid.UUID(undetectable.job.tenant_id)
    await p.orchestrator.records.plan_job(tenant_id, uuid.UUID(undetectable.job.job_id), 1, 1, [])
    poison_chunk = DetectChunk(
        job=undetectable.job,
        chunk_index=0,
        chunk_count=1,
        attempt=1,
        object_key=undetectable.object_key,
        width=WIDTH,
        height=HEIGHT,
        slices=[SliceBox(x1=0, y1=0, x2=600, y2=600)],
        slice_size=512,
        confidence=0.35,
        total_slices=1,
    )
    relay = asyncio.create_task(p.orchestrator.relay.run())
    dispatch = asyncio.create_task(p.orchestrator.dispatcher.run())
    consumers = [
        await bus.consume(
            topology.photos_queue,
            functools.partial(handle_photo_uploaded, deps=p.orchestrator),
            prefetch=4,
            give_up=functools.partial(give_up_photo, deps=p.orchestrator),
        ),
        await bus.consume(
            topology.results_queue,
            functools.partial(handle_chunk_result, deps=p.orchestrator),
            prefetch=4,
            give_up=functools.partial(give_up_result, deps=p.orchestrator),
        ),
        await bus.consume(
            topology.chunks_queue,
            functools.partial(handle_detect_chunk, deps=p.detector),
            prefetch=1,
            give_up=functools.partial(give_up_chunk, deps=p.detector),
            publish_to=topology.chunk_result,
        ),
    ]
    jobs = (good, unplannable, undetectable)
    final: dict[str, Job] = {}
    try:
        for uploaded in (unplannable, good):
            await bus.publish(topology.photo_uploaded, uploaded)
        await bus.publish(topology.detect_chunk, poison_chunk)

        async def all_final() -> bool:
            for uploaded in jobs:
                job = await _records.get_job(
                    store, uuid.UUID(uploaded.job.tenant_id), uuid.UUID(uploaded.job.job_id)
                )
                if job is not None and job.status in FINAL:
                    final[uploaded.job.job_id] = job
            return len(final) == len(jobs)

        await eventually_async(all_final, 60, every_s=0.2)
    finally:
        for consumer in consumers:
            await consumer.stop()
        relay.cancel()
        dispatch.cancel()
    assert final[good.job.job_id].status == "completed"
    unplanned = final[unplannable.job.job_id]
    assert (unplanned.status, unplanned.error_code) == ("failed", "planning_failed")
    assert unplanned.error_message == (
        "the photo could not be planned: failed 3 times; last: "
        "ValueError: slice_size must be a positive multiple of 32"
    )
    undetected = final[undetectable.job.job_id]
    assert (undetected.status, undetected.error_code) == ("failed", "chunk_failed")
    assert undetected.error_message is not None
    assert undetected.error_message.startswith("chunk 0: failed 3 times; last: ")
    assert "could not broadcast" in undetected.error_message
    parked_chunks = await p.take(topology.chunks_queue.dead_letter_queue)
    assert [decode(m, DetectChunk) for m in parked_chunks] == [poison_chunk]
    parked_photos = await p.take(topology.photos_queue.dead_letter_queue)
    assert [decode(m, PhotoUploaded).job for m in parked_photos] == [unplannable.job]
