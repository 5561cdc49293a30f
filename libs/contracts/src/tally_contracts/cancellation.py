"""Where a cancellation request is visible at once, before the orchestrator has recorded it.

The gateway sets these Redis keys when it accepts a cancel request (and then sends the
orchestrator a Cancel message, which makes the cancellation the record). Detectors look at them
before a chunk and between its batches, so no detector goes on working for a cancelled job.
"""

from __future__ import annotations

from typing import Final

TTL_S: Final = 48 * 3600  # as long as a job's projection lives


def job_key(job_id: str) -> str:
    return f"cancel:job:{job_id}"


def session_key(session_id: str) -> str:
    return f"cancel:session:{session_id}"
