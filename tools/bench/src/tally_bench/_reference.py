"""The reference the polling figures are compared with: the seeds' N+1 status endpoint.

`GET /sessions/{sid}/jobs` reads the session's job ids, then each job's hash in its own Redis
round trip, one after another, builds the response dict and lets FastAPI serialise it; no ETag.
It reads the same projection as the gateway and runs under uvicorn with the gateway's settings
(`python -m tally_bench._reference`, TALLY_REDIS_URL, TALLY_HOST, TALLY_PORT).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator
from typing import Any, cast

import uvicorn
from fastapi import FastAPI
from redis.asyncio import Redis

from tally_contracts import projection as redis_keys


def _job(fields: dict[str, str]) -> dict[str, Any]:
    status = fields.get("status", "queued")
    processed, total = int(fields.get("processed", "0")), int(fields.get("total", "0"))
    percent = 100.0 if status == "completed" else (100.0 * processed / total if total else None)
    return {
        "job_id": fields.get("job_id"),
        "image_id": fields.get("image_id"),
        "session_id": fields.get("session_id"),
        "filename": fields.get("filename"),
        "status": status,
        "phase": fields.get("phase", "queued"),
        "progress_percent": percent,
        "processed": processed,
        "total": total,
        "started_at": fields.get("started_at"),
        "completed_at": fields.get("completed_at"),
        "updated_at": fields.get("updated_at"),
        "eta_seconds": None,
        "error_message": fields.get("error_message"),
        "warnings": json.loads(fields.get("warnings", "[]")),
        "thumbnail_url": f"/v1/jobs/{fields.get('job_id')}/thumbnail",
        "result": {"counts": json.loads(fields["counts"])} if "counts" in fields else None,
    }


def create_app(redis_url: str) -> FastAPI:
    # redis-py 8 caps an asyncio pool at 100 connections and fails the request beyond; the
    # reference is measured for its round trips, not for that, so it gets room.
    redis: Redis = Redis.from_url(redis_url, decode_responses=True, max_connections=1024)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await redis.aclose()

    app = FastAPI(title="N+1 reference", lifespan=lifespan)

    @app.get("/sessions/{session_id}/jobs")
    async def poll_jobs(session_id: str) -> dict[str, Any]:
        jobs = []
        members = cast(
            list[str], await redis.zrange(redis_keys.session_order_key(session_id), 0, -1)
        )
        for job_id in map(redis_keys.order_member_job, members):
            jobs.append(_job(cast(dict[str, str], await redis.hgetall(redis_keys.job_key(job_id)))))
        by_status: dict[str, int] = {}
        for job in jobs:
            by_status[job["status"]] = by_status.get(job["status"], 0) + 1
        total = sum(j["total"] for j in jobs)
        done = sum(j["processed"] for j in jobs)
        return {
            "session_id": session_id,
            "jobs": jobs,
            "summary": {
                "total": len(jobs),
                **by_status,
                "overall_progress_percent": 100.0 * done / total if total else None,
            },
        }

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(
        create_app(os.environ["TALLY_REDIS_URL"]),
        host=os.environ.get("TALLY_HOST", "127.0.0.1"),
        port=int(os.environ["TALLY_PORT"]),
        timeout_graceful_shutdown=20,
        access_log=False,
    )


if __name__ == "__main__":
    main()
