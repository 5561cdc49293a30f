"""One trace id spans the upload request, the orchestrator, the detector's Triton call and the
projector: all five handlers run in this process on real servers, spans go to memory."""

from __future__ import annotations

import asyncio
import functools
import io
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import cast

import aio_pika
import httpx
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import SecretStr
from redis.asyncio import Redis
from tests.gateway_app import started

from tally_bus import Bus, Topology
from tally_contracts import projection as redis_keys
from tally_db import Store
from tally_detector import config as detector_config
from tally_detector.deps import Deps as DetectorDeps
from tally_detector.deps import PhotoCache
from tally_detector.handlers import handle_detect_chunk
from tally_inference import TritonModel
from tally_orchestrator import config as orchestrator_config
from tally_orchestrator.deps import Deps as OrchestratorDeps
from tally_orchestrator.handlers import handle_chunk_result, handle_photo_uploaded
from tally_projector.deps import Deps as ProjectorDeps
from tally_projector.handlers import handle_job_event
from tally_projector.projection import Projection
from tally_stack.local_s3 import MOTO_ACCESS_KEY, MOTO_SECRET_KEY
from tally_stack.local_triton import LocalTriton
from tally_storage import ObjectStore, S3Settings
from tally_synth import PhotoSpec, render
from tally_telemetry import configure_tracing
from tally_upload.app import create_app
from tally_upload.config import Settings as UploadSettings

pytestmark = pytest.mark.integration
REDIS_URL = "redis://127.0.0.1:6379/13"
StreamReply = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    configure_tracing("tally-tests", SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture(scope="module")
def photo() -> bytes:
    return render(PhotoSpec(seed=5, index=0, width=1024, height=768))[0]


@dataclass
class World:
    http: httpx.AsyncClient
    store: Store
    redis: Redis
    topology: Topology


@pytest.fixture
async def world(
    database: str, amqp_url: str, s3_endpoint: str, triton: LocalTriton
) -> AsyncIterator[World]:
    """Every service's handlers in this process: upload's app, and consumers for the rest.
    Opened here, not in the test, because opening clients blocks the loop (botocore)."""
    topology = Topology(prefix=f"test-{uuid.uuid4().hex[:10]}")
    bucket = f"trace-{uuid.uuid4().hex[:8]}"
    s3 = S3Settings(
        bucket=bucket,
        endpoint_url=s3_endpoint,
        access_key_id=MOTO_ACCESS_KEY,
        secret_access_key=MOTO_SECRET_KEY,
    )
    redis = Redis.from_url(REDIS_URL)
    await redis.flushdb()
    upload = create_app(
        UploadSettings(
            database_url=SecretStr(database),
            amqp_url=SecretStr(amqp_url),
            bus_prefix=topology.prefix,
            s3_endpoint_url=s3_endpoint,
            s3_bucket=bucket,
            s3_access_key_id=MOTO_ACCESS_KEY,
            s3_secret_access_key=SecretStr(MOTO_SECRET_KEY),
        )
    )
    async with (
        started(upload),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=upload), base_url="http://u") as http,
        Store.open(database) as store,
        ObjectStore.open(s3) as objects,
        TritonModel(triton.endpoints.grpc_url) as model,
        await Bus.connect(amqp_url, topology) as bus,
    ):
        settings = orchestrator_config.Settings(bus_prefix=topology.prefix, relay_interval_s=0.2)
        orchestrator = OrchestratorDeps.build(settings, store, bus, objects)
        relay_task = asyncio.create_task(orchestrator.relay.run())
        dispatch_task = asyncio.create_task(orchestrator.dispatcher.run())
        detector = DetectorDeps(
            detector_config.Settings(bus_prefix=topology.prefix),
            bus,
            objects,
            model,
            PhotoCache(),
            redis,
        )
        consumers = [
            await bus.consume(
                topology.photos_queue,
                functools.partial(handle_photo_uploaded, deps=orchestrator),
                prefetch=4,
            ),
            await bus.consume(
                topology.results_queue,
                functools.partial(handle_chunk_result, deps=orchestrator),
                prefetch=4,
            ),
            await bus.consume(
                topology.chunks_queue,
                functools.partial(handle_detect_chunk, deps=detector),
                prefetch=1,
                publish_to=topology.chunk_result,
            ),
            await bus.consume(
                topology.events_queue,
                functools.partial(handle_job_event, deps=ProjectorDeps(Projection(redis), store)),
                prefetch=16,
            ),
        ]
        try:
            yield World(http, store, redis, topology)
        finally:
            for consumer in consumers:
                await consumer.stop()
            relay_task.cancel()
            dispatch_task.cancel()
            await redis.flushdb()
            await redis.aclose()
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        await topology.delete(await connection.channel())


async def test_one_trace_spans_upload_orchestrator_triton_and_projector(
    spans: InMemorySpanExporter, photo: bytes, world: World
) -> None:
    tenant = await world.store.create_tenant("traced")
    key = (await world.store.create_api_key(tenant.id)).key
    auth = {"Authorization": f"Bearer {key}"}
    session = (await world.http.post("/v1/sessions", json={}, headers=auth)).json()["session_id"]
    response = await world.http.post(
        f"/v1/sessions/{session}/photos",
        headers=auth,
        files=[("file", ("t.jpg", io.BytesIO(photo), "image/jpeg"))],
    )
    assert response.status_code == 202

    async def completed() -> None:
        stream, last = redis_keys.session_events_key(session), b"0"
        while True:
            reply = cast(StreamReply, await world.redis.xread({stream: last}, block=5000))
            for _, entries in reply:
                for entry_id, fields in entries:
                    last = entry_id
                    if fields.get(b"status") == b"completed":
                        return

    await asyncio.wait_for(completed(), 120)

    topology = world.topology
    finished = spans.get_finished_spans()
    (request,) = [s for s in finished if s.name == "POST /v1/sessions/{sid}/photos"]
    trace_id = request.context.trace_id
    in_trace = {s.name for s in finished if s.context.trace_id == trace_id}
    for name in (
        f"{topology.photos_queue.name} process",
        f"{topology.chunks_queue.name} process",
        "triton infer",
        f"{topology.results_queue.name} process",
        f"{topology.events_queue.name} process",
    ):
        assert name in in_trace, f"{name} is not in the upload's trace: {sorted(in_trace)}"
