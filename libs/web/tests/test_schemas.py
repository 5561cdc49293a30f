"""The shared response schemas say what the services answer."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from pydantic import TypeAdapter, ValidationError

from tally_contracts.v1 import DetectionParams
from tally_inference import DetectParams, SliceParams
from tally_web import envelope
from tally_web.schemas import ErrorEnvelope, Moment, SessionParams, SessionPublic


def test_the_envelope_the_services_build_is_the_error_schema() -> None:
    body = envelope("not_found", "no job 7")
    assert ErrorEnvelope.model_validate(body).model_dump() == body


def test_a_moment_is_written_as_every_service_writes_times() -> None:
    moment = TypeAdapter(Moment)
    for written in ("2026-12-01T11:47:04.123456+00:00", "2026-12-01T11:47:04+00:00"):
        assert moment.dump_python(moment.validate_python(written), mode="json") == written
    now = datetime.now(UTC)
    session = SessionPublic(
        session_id=uuid.uuid4(), name="", params=SessionParams(), created_at=now
    )
    assert session.model_dump(mode="json")["created_at"] == now.isoformat()
    assert moment.json_schema(mode="serialization") == {"type": "string", "format": "date-time"}


@pytest.mark.parametrize("confidence", [0.99999999, 1 - 1e-9, 1e-50, 1e-46])
def test_a_confidence_the_bus_would_carry_as_0_or_1_is_refused(confidence: float) -> None:
    with pytest.raises(ValidationError, match="32-bit float"):
        SessionParams(confidence=confidence)


def test_every_accepted_parameter_reaches_the_detectors_in_the_range_they_take() -> None:
    for confidence in (0.9999999, 1e-6, 0.35):
        carried = DetectionParams(confidence=SessionParams(confidence=confidence).confidence)
        DetectParams(confidence=carried.confidence)  # raises out of (0, 1)
    for overlap in (0.0, 0.5, 0.49999999999, 1e-50, 0.3):
        carried = DetectionParams(overlap=SessionParams(overlap=overlap).overlap)
        SliceParams(512, carried.overlap)  # raises out of [0, 0.9)
