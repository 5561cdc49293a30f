"""Job and summary objects of the HTTP contract, from the Redis projection or, when Redis has
lost them, from PostgreSQL. Pure functions."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from typing import Any

from tally_contracts.statuses import ACTIVE, FINAL, STATUSES, JobStatus
from tally_db import Job


def _percent(processed: int, total: int, status: str) -> float | None:
    if status == JobStatus.COMPLETED:
        return 100.0
    if total <= 0:
        return None  # not planned yet: progress unknown, not zero
    return round(100.0 * min(processed, total) / total, 1)


def _epoch(stamp: str | None) -> float | None:
    return None if not stamp else datetime.fromisoformat(stamp).timestamp()


def _job_eta(
    status: str, processed: int, total: int, started: str | None, updated: str | None
) -> float | None:
    """Seconds left for one job at its own measured rate (slices done since it started); None
    until it has done some and for finished jobs."""
    if status != JobStatus.PROCESSING or processed <= 0 or total <= 0:
        return None
    begin, last = _epoch(started), _epoch(updated)
    if begin is None or last is None or last <= begin:
        return None
    rate = processed / (last - begin)
    return round(max(total - processed, 0) / rate, 1)


def eta_seconds(
    *,
    open_slices: int,
    unplanned_jobs: int,
    slices_done: int,
    slices_planned: int,
    jobs_planned: int,
    first_active: float | None,
    last_active: float | None,
) -> float | None:
    """A session's time left from its measured throughput: slices still open (jobs not yet
    planned count as the mean planned job), divided by the slice rate observed between the
    first and the last slice work. As of the last work seen, so it changes only with the
    session's state. 0 when nothing is open; None while there is no rate to measure yet."""
    if open_slices <= 0 and unplanned_jobs <= 0:
        return 0.0
    if first_active is None or last_active is None or last_active <= first_active:
        return None
    if slices_done <= 0 or (unplanned_jobs and not jobs_planned):
        return None
    rate = slices_done / (last_active - first_active)
    left = open_slices + (unplanned_jobs * slices_planned / jobs_planned if unplanned_jobs else 0)
    return round(left / rate, 1)


# Why a job or session has no ETA when neither the wait model nor its own throughput gives one.
MEASURING = "measuring"


def _wait(fields: dict[str, str], fallback: float | None, open_: bool) -> dict[str, Any]:
    """The ETA fields of a job or session: the wait model's estimate when the projection has
    one (`eta`, `eta_low`, `eta_high`, or `eta_reason` when there is none; as of `eta_at`),
    else `fallback`, from the measured throughput, without a range. Nothing open: `fallback`
    (a job's is null, a session's 0) and no reason."""
    if open_ and "eta" in fields:
        return {
            "eta_seconds": float(fields["eta"]),
            "eta_range": [float(fields["eta_low"]), float(fields["eta_high"])],
            "eta_reason": None,
            "eta_at": fields.get("eta_at"),
        }
    if open_ and "eta_reason" in fields:
        return {
            "eta_seconds": None,
            "eta_range": None,
            "eta_reason": fields["eta_reason"],
            "eta_at": fields.get("eta_at"),
        }
    reason = MEASURING if open_ and fallback is None else None
    return {"eta_seconds": fallback, "eta_range": None, "eta_reason": reason, "eta_at": None}


def job_from_projection(fields: dict[str, str]) -> dict[str, Any]:
    status = fields.get("status", JobStatus.QUEUED)
    processed, total = int(fields.get("processed", "0")), int(fields.get("total", "0"))
    counts = json.loads(fields["counts"]) if "counts" in fields else None
    return {
        "job_id": fields["job_id"],
        "image_id": fields.get("image_id"),
        "session_id": fields["session_id"],
        "filename": fields.get("filename"),
        "status": status,
        "phase": fields.get("phase", "queued"),
        "progress_percent": _percent(processed, total, status),
        "processed": processed,
        "total": total,
        "created_at": fields.get("created_at"),
        "started_at": fields.get("started_at"),
        "completed_at": fields.get("completed_at"),
        "updated_at": fields.get("updated_at"),
        **_wait(
            fields,
            _job_eta(status, processed, total, fields.get("started_at"), fields.get("updated_at")),
            status not in FINAL,
        ),
        "error_message": fields.get("error_message"),
        "warnings": json.loads(fields.get("warnings", "[]")),
        "thumbnail_url": f"/v1/jobs/{fields['job_id']}/thumbnail",
        "result": None if counts is None else {"counts": counts},
        "revision": int(fields["rev"]) if "rev" in fields else None,
    }


def job_from_record(job: Job, counts: dict[str, int] | None) -> dict[str, Any]:
    def iso(value: Any) -> str | None:
        return None if value is None else value.isoformat()

    return {
        "job_id": str(job.id),
        "image_id": str(job.image_id),
        "session_id": str(job.session_id),
        "filename": job.filename,
        "status": job.status,
        "phase": job.phase,
        "progress_percent": _percent(job.processed, job.total, job.status),
        "processed": job.processed,
        "total": job.total,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "completed_at": iso(job.completed_at),
        "updated_at": iso(job.updated_at),
        **_wait(
            {},
            _job_eta(
                job.status, job.processed, job.total, iso(job.started_at), iso(job.updated_at)
            ),
            job.status not in FINAL,
        ),
        "error_message": job.error_message,
        "warnings": list(job.warnings),
        "thumbnail_url": f"/v1/jobs/{job.id}/thumbnail",
        "result": None if counts is None else {"counts": counts},
        "revision": None,
    }


def summary(jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """A session's summary from its jobs (what PostgreSQL gives when Redis has lost them)."""
    by_status = Counter(j["status"] for j in jobs)
    done = sum(j["total"] if j["status"] == JobStatus.COMPLETED else j["processed"] for j in jobs)
    planned = sum(j["total"] for j in jobs)
    open_jobs = [j for j in jobs if j["status"] not in FINAL]
    started = [t for j in jobs if (t := _epoch(j["started_at"])) is not None]
    worked = [t for j in jobs if j["processed"] and (t := _epoch(j["updated_at"])) is not None]
    eta = eta_seconds(
        open_slices=sum(max(j["total"] - j["processed"], 0) for j in open_jobs),
        unplanned_jobs=sum(1 for j in open_jobs if not j["total"]),
        slices_done=done,
        slices_planned=planned,
        jobs_planned=sum(1 for j in jobs if j["total"]),
        first_active=min(started, default=None),
        last_active=max(worked, default=None),
    )
    return _summary(len(jobs), by_status, done, planned, _wait({}, eta, bool(open_jobs)), jobs)


def summary_from_session(fields: dict[str, str]) -> dict[str, Any]:
    """A session's summary from the projection's session hash (the same numbers as summary()
    of its jobs, kept by the fold)."""

    def number(name: str) -> int:
        return int(fields.get(name, "0"))

    def moment(name: str) -> float | None:
        return float(fields[name]) if name in fields else None

    total = number("total")
    eta = eta_seconds(
        open_slices=number("slices_open"),
        unplanned_jobs=number("jobs_unplanned"),
        slices_done=number("slices_done"),
        slices_planned=number("slices_total"),
        jobs_planned=number("jobs_planned"),
        first_active=moment("first_active"),
        last_active=moment("last_active"),
    )
    by_status: Counter[str] = Counter({status: number(status) for status in STATUSES})
    open_ = any(by_status[status] for status in ACTIVE)
    return _summary(
        total,
        by_status,
        number("slices_done"),
        number("slices_total"),
        _wait(fields, eta, open_),
        total,
    )


def finished(summary: dict[str, Any]) -> bool:
    """Every job the session has so far reached a final status."""
    return bool(summary["total"]) and not any(summary[status] for status in ACTIVE)


def _summary(
    total: int,
    by_status: Counter[str],
    done: int,
    planned: int,
    wait: dict[str, Any],
    any_jobs: object,
) -> dict[str, Any]:
    """The summary object; a session without jobs has no ETA (nothing was asked yet)."""
    if not any_jobs:
        wait = {"eta_seconds": None, "eta_range": None, "eta_reason": None, "eta_at": None}
    elif wait["eta_seconds"] == 0:
        wait |= {"eta_range": [0.0, 0.0]}
    return {
        "total": total,
        **{status: by_status.get(status, 0) for status in STATUSES},
        "overall_progress_percent": round(100.0 * min(done, planned) / planned, 1)
        if planned
        else None,
        **wait,
    }
