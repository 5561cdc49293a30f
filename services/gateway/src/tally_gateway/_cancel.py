"""Cancel requests: the gateway accepts them, the orchestrator carries them out."""

from __future__ import annotations

import logging

from google.protobuf.timestamp_pb2 import Timestamp
from redis.exceptions import RedisError

from tally_contracts import cancellation
from tally_contracts.v1 import Cancel, JobRef
from tally_gateway.deps import Deps
from tally_web import ApiError

REASON = "cancelled on request"
log = logging.getLogger("tally_gateway.cancel")


async def request_cancel(deps: Deps, job: JobRef) -> None:
    """Send the orchestrator a Cancel (confirmed by the broker) for the job, or for the whole
    session when `job.job_id` is empty; then mark it in Redis, where detectors look before each
    chunk and between batches, so they stop at once rather than when the orchestrator has
    recorded it. 503 when the broker cannot take it (nothing was cancelled then)."""
    requested = Timestamp()
    requested.GetCurrentTime()
    try:
        await deps.bus.publish(
            deps.bus.topology.cancel, Cancel(job=job, reason=REASON, requested_at=requested)
        )
    except Exception as exc:  # the broker is away or refused: the caller may try again
        log.warning("cancel of %s not queued: %r", job, exc)
        raise ApiError(
            503, "unavailable", "the cancel request could not be queued; try again shortly"
        ) from exc
    marker = (
        cancellation.job_key(job.job_id) if job.job_id else cancellation.session_key(job.session_id)
    )
    try:
        await deps.redis.set(marker, "1", ex=cancellation.TTL_S)
    except RedisError as exc:  # the orchestrator still cancels; detectors finish what they hold
        log.warning("cancel marker %s not set (%s): results will be dropped instead", marker, exc)
