"""Job and summary objects of the HTTP contract, from the Redis projection or, when Redis has
lost them, from PostgreSQL. Pure functions."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from tally_db import Job

STATUSES = ("queued", "processing", "completed", "failed", "cancelled")
FINAL = frozenset({"completed", "failed", "cancelled"})


def _percent(processed: int, total: int, status: str) -> float | None:
    if status == "completed":
        return 100.0
    if total <= 0:
        return None  # not planned yet: progress unknown, not zero
    return round(100.0 * min(processed, total) / total, 1)


def job_from_projection(fields: dict[str, str]) -> dict[str, Any]:
    status = fields.get("status", "queued")
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
        "eta_seconds": None,
        "error_message": fields.get("error_message"),
        "warnings": json.loads(fields.get("warnings", "[]")),
        "thumbnail_url": f"/v1/jobs/{fields['job_id']}/thumbnail",
        "result": None if counts is None else {"counts": counts},
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
        "eta_seconds": None,
        "error_message": job.error_message,
        "warnings": list(job.warnings),
        "thumbnail_url": f"/v1/jobs/{job.id}/thumbnail",
        "result": None if counts is None else {"counts": counts},
    }


def summary(jobs: list[dict[str, Any]]) -> dict[str, Any]:
    by_status = Counter(j["status"] for j in jobs)
    done = sum(j["total"] if j["status"] == "completed" else j["processed"] for j in jobs)
    planned = sum(j["total"] for j in jobs)
    return {
        "total": len(jobs),
        **{status: by_status.get(status, 0) for status in STATUSES},
        "overall_progress_percent": round(100.0 * done / planned, 1) if planned else None,
        "eta_seconds": None,
    }
