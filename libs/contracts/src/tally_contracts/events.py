"""The one way a JobEvent is made: whoever writes one says which job, its sequence number
(tally_contracts.sequence), its source and its kind (queued=..., progress=..., ...)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from tally_contracts.v1 import JobEvent, JobRef


def timestamp(moment: datetime | None = None) -> Timestamp:
    """`moment` (now when None) as a protobuf Timestamp."""
    stamp = Timestamp()
    stamp.FromDatetime(moment or datetime.now(UTC))
    return stamp


def job_event(
    job: JobRef,
    sequence: int,
    source: str,
    *,
    at: datetime | None = None,
    event_id: str | None = None,
    **kind: Any,
) -> JobEvent:
    """A JobEvent about `job`: a fresh id unless `event_id` is given (a rebuild's are stable),
    emitted `at` (now when None); `kind` is its one kind field, e.g. `failed=JobEvent.Failed()`."""
    return JobEvent(
        event_id=event_id or uuid.uuid4().hex,
        job=job,
        sequence=sequence,
        emitted_at=timestamp(at),
        source=source,
        **kind,
    )
