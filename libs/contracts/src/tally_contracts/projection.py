"""The live projection's Redis keys: the projector writes them, the gateway reads them.

Keys (TTLs as the design says: session 24 h, job 48 h):
    job:{job_id}                  hash: the job's state and `seq`, the last folded sequence
    job:{job_id}:log              list: the job's recent log entries, newest first
    job:{job_id}:deleted          tombstone of a deleted job: its late events change nothing
    session:{session_id}          hash: jobs per status, slices done, planned and open, when
                                  slice work was first and last seen, `last_event_id` (the
                                  stream's last entry), `rev` (a count of the session's visible
                                  changes), `epoch` (when this projection of it began, ms),
                                  `last_updated` (the newest job `updated_at`)
    session:{session_id}:order    sorted set of the session's jobs, in the order they came
                                  (every score 0; members `order_member`s, compared as bytes):
                                  its pages
    session:{session_id}:changes  sorted set of the session's job ids (deleted ones too) by
                                  the `rev` of their last change: its deltas
    session:{session_id}:events   stream of `job` snapshots, `summary`, `done` and `deleted`
                                  entries (SSE and its resume read it; bounded length)
    tenant:{tenant_id}:jobs       sorted set of job ids by creation time, for listing
    projection:ready              set once the projection is whole (after a rebuild): without
                                  it Redis was wiped or restarted empty, and readers go to
                                  PostgreSQL while the projector rebuilds

The Lua scripts take their keys as KEYS, in the order the `*_keys` functions here give them
(each script's header names them, `-- KEYS[n]: name`, and a test checks the two agree). No
script reads keys it finds inside Redis: the gateway's session read returns the job ids of a
page or a delta, and their hashes are read after it, in one pipeline (a script holds Redis for
every tenant while it runs; a pipeline's commands let others in between).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Final

Id = str | uuid.UUID

# The layout's version is in the marker's name: a projector of another layout finds no marker,
# and rebuilds the projection in its own before anything reads it.
READY_KEY: Final = "projection:v2:ready"
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


def session_order_key(session_id: Id) -> str:
    return f"{session_key(session_id)}:order"


def session_changes_key(session_id: Id) -> str:
    return f"{session_key(session_id)}:changes"


def order_member(created_at_s: float, job_id: Id) -> str:
    """A job's place in its session's order: when it came (µs, fixed width), then its id, so
    that comparing members as bytes sorts jobs by (time, id), and a member is a page cursor."""
    return f"{max(0, round(created_at_s * 1_000_000)):016d}:{job_id}"


def order_member_job(member: str) -> str:
    """The job id of an order member."""
    return member.partition(":")[2]


def session_events_key(session_id: Id) -> str:
    return f"{session_key(session_id)}:events"


def tenant_jobs_key(tenant_id: Id) -> str:
    return f"tenant:{tenant_id}:jobs"


def fold_keys(tenant_id: Id, session_id: Id, job_id: Id) -> list[str]:
    """What one job's fold (_fold.lua) and forget (_forget.lua) touch, as their KEYS[1..9]:
    job, session, session_order, session_events, tenant_jobs, job_log, ready, tombstone,
    session_changes."""
    return [
        job_key(job_id),
        session_key(session_id),
        session_order_key(session_id),
        session_events_key(session_id),
        tenant_jobs_key(tenant_id),
        job_log_key(job_id),
        READY_KEY,
        tombstone_key(job_id),
        session_changes_key(session_id),
    ]


def announce_keys(session_id: Id, job_ids: Iterable[Id]) -> list[str]:
    """What announcing rebuilt jobs (_announce.lua) touches, as its KEYS: session,
    session_events, then each job's hash."""
    return [
        session_key(session_id),
        session_events_key(session_id),
        *(job_key(job_id) for job_id in job_ids),
    ]


def wait_keys(session_id: Id, job_ids: Iterable[Id]) -> list[str]:
    """What folding a session's wait (_wait.lua) touches, as its KEYS: session,
    session_events, session_changes, then each job's hash."""
    return [
        session_key(session_id),
        session_events_key(session_id),
        session_changes_key(session_id),
        *(job_key(job_id) for job_id in job_ids),
    ]


def session_read_keys(session_id: Id) -> list[str]:
    """What the gateway's read of a session (its _session.lua: the summary, a page or a delta)
    takes, as its KEYS: ready, session, session_order, session_changes."""
    return [
        READY_KEY,
        session_key(session_id),
        session_order_key(session_id),
        session_changes_key(session_id),
    ]
