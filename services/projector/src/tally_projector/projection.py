"""The live projection in Redis: what the gateway reads. The projector is its only writer.

Its keys, and the order the Lua scripts take them in, are tally_contracts.projection's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Final

from redis.asyncio import Redis

from tally_contracts import projection as redis_keys
from tally_contracts.statuses import FINAL, JobStatus
from tally_contracts.v1 import JobEvent, SessionWait

JOB_TTL_S: Final = 48 * 3600
SESSION_TTL_S: Final = 24 * 3600
STREAM_MAX_LEN: Final = 1000
LOG_LENGTH: Final = 50  # recent entries kept per job
ANNOUNCE_BATCH: Final = 100  # rebuilt jobs told per script call (~1 ms of Redis each)
_ACTIVE_KINDS: Final = frozenset({"started", "progress", "completed", "failed"})
_FINAL_JSON: Final = json.dumps(sorted(FINAL))  # what _fold.lua takes as final

_FOLD = resources.files("tally_projector").joinpath("_fold.lua").read_text()
_ANNOUNCE = resources.files("tally_projector").joinpath("_announce.lua").read_text()
_FORGET = resources.files("tally_projector").joinpath("_forget.lua").read_text()
_WAIT = resources.files("tally_projector").joinpath("_wait.lua").read_text()
# A new estimate replaces the one shown when they differ by more than this, counted down to
# now: 0.25 s, or 2 % of the new wait (a smaller change is not worth a visible update; a
# larger threshold leaves what is shown that much behind the estimate: up to 2.5 s of a
# 50 s wait at 5 %, half the error `make bench-eta` holds an ETA to).
WAIT_MIN_CHANGE_S: Final = 0.25
WAIT_MIN_CHANGE: Final = 0.02


class ProjectionLostError(Exception):
    """Redis has lost the projection (wiped, or restarted empty): rebuild it before folding."""


@dataclass(frozen=True, slots=True)
class Change:
    """What one event does to a job: its status afterwards, the facts it tells (true whenever
    they arrive) and the state it sets (only when it is the newest event)."""

    status: JobStatus
    facts: dict[str, str]
    state: dict[str, str]
    maxima: dict[str, str] = field(default_factory=dict)  # only ever grow


def _stamp(event: JobEvent) -> str:
    when = event.emitted_at.ToDatetime(tzinfo=UTC) if event.HasField("emitted_at") else None
    return (when or datetime.now(UTC)).isoformat()


def change_for(event: JobEvent) -> Change:
    """The projection's meaning of each kind of event. Pure."""
    job = event.job
    stamp = _stamp(event)
    facts = {"job_id": job.job_id, "session_id": job.session_id, "tenant_id": job.tenant_id}
    state = {"updated_at": stamp}
    kind = event.WhichOneof("kind")
    if kind == "queued":
        q = event.queued
        facts |= {
            "image_id": q.image_id,
            "filename": q.filename,
            "width": str(q.width),
            "height": str(q.height),
            "created_at": stamp,
        }
        return Change(JobStatus.QUEUED, facts, state | {"phase": "queued"})
    if kind == "planned":
        p = event.planned
        facts |= {"total": str(p.total_slices), "chunk_count": str(p.chunk_count)}
        return Change(JobStatus.QUEUED, facts, state | {"phase": "planned"})
    if kind == "started":
        facts |= {"started_at": stamp}
        return Change(JobStatus.PROCESSING, facts, state | {"phase": "detecting"})
    if kind == "progress":
        g = event.progress
        facts |= {"total": str(g.total_slices), "started_at": stamp}
        return Change(
            JobStatus.PROCESSING,
            facts,
            state | {"phase": "detecting"},
            {"processed": str(g.slices_done)},
        )
    if kind == "completed":
        c = event.completed
        return Change(
            JobStatus.COMPLETED,
            facts,
            state
            | {
                "phase": "done",
                "completed_at": stamp,
                "counts": json.dumps(dict(c.counts), sort_keys=True),
                "detections": str(c.detections),
                "result_key": c.result_key,
                "warnings": json.dumps(list(c.warnings)),
            },
        )
    if kind == "failed":
        return Change(
            JobStatus.FAILED,
            facts,
            state
            | {
                "phase": "done",
                "completed_at": stamp,
                "error_code": event.failed.code,
                "error_message": event.failed.message,
            },
        )
    if kind == "cancelled":
        return Change(JobStatus.CANCELLED, facts, state | {"phase": "done", "completed_at": stamp})
    raise ValueError(f"a JobEvent without a kind: {event.event_id}")


def _log_entry(event: JobEvent, change: Change) -> dict[str, object]:
    kind = event.WhichOneof("kind") or "unknown"
    entry: dict[str, object] = {
        "at": _stamp(event),
        "event": kind,
        "source": event.source,
        "sequence": event.sequence,
    }
    if kind == "progress":
        entry["message"] = f"{event.progress.slices_done} of {event.progress.total_slices} slices"
    elif kind == "planned":
        entry["message"] = (
            f"{event.planned.total_slices} slices in {event.planned.chunk_count} chunks"
        )
    elif kind == "started":
        entry["message"] = f"chunk {event.started.chunk_index} started"
    elif kind == "failed":
        entry["message"] = event.failed.message
    elif kind == "completed":
        entry["message"] = ", ".join(
            f"{n} {label}" for label, n in sorted(event.completed.counts.items())
        )
    return entry


class Projection:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._fold = redis.register_script(_FOLD)
        self._announce = redis.register_script(_ANNOUNCE)
        self._forget = redis.register_script(_FORGET)
        self._wait = redis.register_script(_WAIT)

    async def fold(self, event: JobEvent, *, rebuilding: bool = False) -> bool:
        """Apply one event; False when it changed nothing the job shows (stale, repeated, after
        a final status). Raises ProjectionLostError, folding nothing, when the projection is
        not whole (only a rebuild folds then)."""
        if event.WhichOneof("kind") == "deleted":
            return await self.forget(event)
        change = change_for(event)
        score = (
            event.emitted_at.ToDatetime(tzinfo=UTC).timestamp()
            if event.HasField("emitted_at")
            else 0.0
        )
        folded = await self._fold(
            keys=redis_keys.fold_keys(event.job.tenant_id, event.job.session_id, event.job.job_id),
            args=[
                event.sequence,
                change.status,
                json.dumps(change.facts),
                json.dumps(change.state),
                JOB_TTL_S,
                SESSION_TTL_S,
                STREAM_MAX_LEN,
                score,
                json.dumps(change.maxima),
                json.dumps(_log_entry(event, change)),
                LOG_LENGTH,
                score if event.WhichOneof("kind") in _ACTIVE_KINDS and score else "",
                "1" if rebuilding else "0",
                _FINAL_JSON,
                redis_keys.order_member(score, event.job.job_id),
            ],
        )
        if folded == -1:
            raise ProjectionLostError("the Redis projection is not whole: rebuild it first")
        return bool(folded)

    async def forget(self, event: JobEvent) -> bool:
        """A deleted job leaves its session and every view; later events of it change nothing.
        False when it was gone already. Raises ProjectionLostError like fold."""
        forgotten = await self._forget(
            keys=redis_keys.fold_keys(event.job.tenant_id, event.job.session_id, event.job.job_id),
            args=[event.job.job_id, JOB_TTL_S, STREAM_MAX_LEN, SESSION_TTL_S],
        )
        if forgotten == -1:
            raise ProjectionLostError("the Redis projection is not whole: rebuild it first")
        return bool(forgotten)

    async def wait(self, message: SessionWait) -> int:
        """Show a session's wait on the session and its open jobs, where it changed enough to
        count (see _wait.lua); returns how many of them changed. A session or job not folded
        yet, or a job already final, is left alone."""
        at = message.estimated_at.ToDatetime(tzinfo=UTC)
        jobs = list(message.jobs)
        changed = await self._wait(
            keys=redis_keys.wait_keys(message.session.session_id, [j.job_id for j in jobs]),
            args=[
                repr(at.timestamp()),
                at.isoformat(),
                json.dumps(_wait(message.wait)),
                json.dumps([_wait(j.wait) for j in jobs]),
                STREAM_MAX_LEN,
                SESSION_TTL_S,
                _FINAL_JSON,
                WAIT_MIN_CHANGE_S,
                WAIT_MIN_CHANGE,
            ],
        )
        return int(changed)

    async def announce(self, session_id: str, job_ids: Iterable[str]) -> None:
        """Send rebuilt jobs' states, then their session's summary (and `done` when it has
        finished) to the session's stream, in batches: a call holds Redis for every tenant."""
        ids = list(job_ids)
        batches = [ids[i : i + ANNOUNCE_BATCH] for i in range(0, len(ids), ANNOUNCE_BATCH)] or [[]]
        for n, batch in enumerate(batches, 1):
            await self._announce(
                keys=redis_keys.announce_keys(session_id, batch),
                args=[STREAM_MAX_LEN, SESSION_TTL_S, "1" if n == len(batches) else "0"],
            )

    async def mark_ready(self) -> None:
        """The projection is whole: readers may trust it, folds may go on."""
        await self.redis.set(redis_keys.READY_KEY, "1")

    async def is_ready(self) -> bool:
        return bool(await self.redis.exists(redis_keys.READY_KEY))

    async def job(self, job_id: str) -> dict[str, str]:
        return await self._hash(redis_keys.job_key(job_id))

    async def session(self, session_id: str) -> dict[str, str]:
        return await self._hash(redis_keys.session_key(session_id))

    async def _hash(self, key: str) -> dict[str, str]:
        raw = await self.redis.hgetall(key)
        return {_text(k): _text(v) for k, v in raw.items()}


def _wait(wait: SessionWait.Wait) -> dict[str, object]:
    if wait.reason:
        return {"why": wait.reason}
    return {"s": wait.seconds, "lo": wait.low, "hi": wait.high}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
