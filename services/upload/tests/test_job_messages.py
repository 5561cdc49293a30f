"""What a new job announces (no servers): PhotoUploaded for the orchestrator and its `queued`
event, both through the outbox."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from tally_bus import Topology
from tally_contracts import sequence
from tally_contracts.v1 import JobEvent, JobRef, PhotoUploaded
from tally_db import Model
from tally_upload._records import NewJob, detection_params, new_job_messages

AT = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
MODEL = Model(
    id=uuid.uuid4(),
    tenant_id=uuid.uuid4(),
    name="traps",
    version=3,
    format="yolov8",
    labels=("whitefly", "thrips"),
    input_size=640,
    batched=False,
    input_name="images",
    output_name="output0",
    triton_name="m_abc",
    object_key="t/models/abc.onnx",
    bytes=10,
    sha256="",
    status="ready",
    error=None,
    is_default=False,
    created_at=AT,
    validated_at=AT,
)
# Exact in float32, as the message carries them.
PARAMS = detection_params({"slice_size": 640, "overlap": 0.25, "confidence": 0.375}, MODEL)


def _job() -> NewJob:
    tenant, session = uuid.uuid4(), uuid.uuid4()
    return NewJob(tenant, session, "tray.jpg", f"{tenant}/{session}/j/original.jpg", 4000, 3000)


def test_a_new_job_announces_its_photo_to_the_orchestrator_then_its_queued_event() -> None:
    job, routes = _job(), Topology(prefix="t")
    uploaded, queued = new_job_messages(job, PARAMS, routes, {"traceparent": "00-abc"}, at=AT)

    assert (uploaded.exchange, uploaded.routing_key) == (
        routes.photo_uploaded.exchange,
        routes.photo_uploaded.routing_key,
    )
    assert (queued.exchange, queued.routing_key) == (
        routes.job_event.exchange,
        routes.job_event.routing_key,
    )
    assert (uploaded.message_type, queued.message_type) == (
        "tally.v1.PhotoUploaded",
        "tally.v1.JobEvent",
    )
    assert uploaded.headers == queued.headers == {"traceparent": "00-abc"}

    ref = JobRef(tenant_id=str(job.tenant_id), session_id=str(job.session_id), job_id=str(job.id))
    photo = PhotoUploaded.FromString(uploaded.payload)
    assert photo.job == ref
    assert (photo.image_id, photo.filename, photo.object_key) == (
        str(job.image_id),
        "tray.jpg",
        job.object_key,
    )
    assert (photo.width, photo.height) == (4000, 3000)
    params = photo.params
    assert (params.slice_size, params.overlap, params.confidence) == (640, 0.25, 0.375)
    # The session's model, as the detectors reach and read it on Triton.
    model = params.model
    assert (model.model_id, model.name, model.version, model.format) == (
        str(MODEL.id),
        "traps",
        3,
        "yolov8",
    )
    assert (model.triton_name, model.input_name, model.output_name) == (
        "m_abc",
        "images",
        "output0",
    )
    assert list(model.labels) == ["whitefly", "thrips"]
    assert model.max_batch == 1  # its graph takes one slice at a time
    assert photo.uploaded_at.ToDatetime(UTC) == AT

    event = JobEvent.FromString(queued.payload)
    assert event.job == ref
    assert (event.WhichOneof("kind"), event.sequence, event.source) == (
        "queued",
        sequence.QUEUED,
        "upload",
    )
    assert (event.queued.image_id, event.queued.filename) == (str(job.image_id), "tray.jpg")
    assert (event.queued.width, event.queued.height) == (4000, 3000)
    assert event.emitted_at == photo.uploaded_at  # one moment: the upload's
    assert event.event_id


def test_every_job_gets_events_of_its_own() -> None:
    routes = Topology()
    first, second = (new_job_messages(_job(), PARAMS, routes)[1] for _ in range(2))
    ids = {JobEvent.FromString(m.payload).event_id for m in (first, second)}
    assert len(ids) == 2
    assert first.headers == {}  # no trace context: none is invented


def test_a_session_from_before_the_registry_carries_no_model_the_built_in_then() -> None:
    params = detection_params({"slice_size": 512, "overlap": 0.25, "confidence": 0.35})
    assert not params.HasField("model")
