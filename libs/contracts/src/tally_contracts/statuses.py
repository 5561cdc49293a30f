"""A job's status: the names every service, the HTTP API and the projection use.

The proto's `JobStatus` enum is the contract; `JobStatus` here is its string form (the names the
API answers and the database stores), and a test checks the two list the same statuses.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from tally_contracts.v1 import messages_pb2


class JobStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in FINAL

    def to_proto(self) -> int:
        return messages_pb2.JobStatus.Value(f"JOB_STATUS_{self.name}")

    @classmethod
    def from_proto(cls, value: int) -> JobStatus:
        name = messages_pb2.JobStatus.Name(value)
        if name == "JOB_STATUS_UNSPECIFIED":
            raise ValueError("a job status must be given")
        return cls[name.removeprefix("JOB_STATUS_")]


# In the order a job goes through them (the order the API and the dashboard list them).
STATUSES: Final = tuple(JobStatus)
# A job in one of these never changes again.
FINAL: Final = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
# Not finished: waiting or being worked on.
ACTIVE: Final = frozenset(STATUSES) - FINAL
