"""The shared response schemas say what the services answer."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pydantic import TypeAdapter

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
