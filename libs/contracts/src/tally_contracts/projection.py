"""The live projection's Redis keys: the projector writes them, the gateway reads them.

Keys (TTLs as the design says: session 24 h, job 48 h):
    job:{job_id}                  hash: the job's state and `seq`, the last folded sequence
    job:{job_id}:log              list: the job's recent log entries, newest first
    job:{job_id}:deleted          tombstone of a deleted job: its late events change nothing
    session:{session_id}          hash: jobs per status, slices done, planned and open, when
                                  slice work was first and last seen, `last_event_id`
    session:{session_id}:jobs     set of the session's job ids
    session:{session_id}:events   stream of `job` snapshots, `summary`, `done` and `deleted`
                                  entries (SSE and its resume read it; bounded length)
    tenant:{tenant_id}:jobs       sorted set of job ids by creation time, for listing
    projection:ready              set once the projection is whole (after a rebuild): without
                                  it Redis was wiped or restarted empty, and readers go to
                                  PostgreSQL while the projector rebuilds

The Lua scripts take their keys as KEYS, in the order the `*_keys` functions here give them
(each script's header names them, `-- KEYS[n]: name`, and a test checks the two agree). A
script that finds job ids inside Redis (a session's job set) builds their keys from
JOB_KEY_PREFIX, given to it as an argument.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Final

Id = str | uuid.UUID

READY_KEY: Final = "projection:ready"
JOB_KEY_PREFIX: Final = "job:"


def job_key(job_id: Id) -> str:
    return f"{JOB_KEY_PREFIX}{job_id}"


def job_log_key(job_id: Id) -> str:
    return f"{job_key(job_id)}:log"


def tombstone_key(job_id: Id) -> str:
    """A deleted job's tombstone (the projector's; the gateway sets it too as it deletes)."""
    return f"{job_key(job_id)}:deleted"


def session_key(session_id: Id) -> str:
    return f"session:{session_id}"


def session_jobs_key(session_id: Id) -> str:
    return f"{session_key(session_id)}:jobs"


def session_events_key(session_id: Id) -> str:
    return f"{session_key(session_id)}:events"


def tenant_jobs_key(tenant_id: Id) -> str:
    return f"tenant:{tenant_id}:jobs"


def fold_keys(tenant_id: Id, session_id: Id, job_id: Id) -> list[str]:
    """What one job's fold (_fold.lua) and forget (_forget.lua) touch, as their KEYS[1..8]:
    job, session, session_jobs, session_events, tenant_jobs, job_log, ready, tombstone."""
    return [
        job_key(job_id),
        session_key(session_id),
        session_jobs_key(session_id),
        session_events_key(session_id),
        tenant_jobs_key(tenant_id),
        job_log_key(job_id),
        READY_KEY,
        tombstone_key(job_id),
    ]


def announce_keys(session_id: Id, job_ids: Iterable[Id]) -> list[str]:
    """What announcing rebuilt jobs (_announce.lua) touches, as its KEYS: session,
    session_events, then each job's hash."""
    return [
        session_key(session_id),
        session_events_key(session_id),
        *(job_key(job_id) for job_id in job_ids),
    ]


def session_read_keys(session_id: Id) -> list[str]:
    """What the gateway's read of a whole session (its _session.lua) takes, as its KEYS: ready,
    session, session_jobs."""
    return [READY_KEY, session_key(session_id), session_jobs_key(session_id)]
