"""Where a job's objects live in the bucket: one folder per job, `{tenant}/{session}/{job}/`.

    original{ext}    the photo as uploaded (the job's `object_key`; its extension kept)
    thumbnail.jpg    the upload's JPEG thumbnail, beside it
    result.json      the detections (tally_storage.JobResult), beside it, once completed

Upload names the original; everyone else finds the other two beside the job's `object_key`.
"""

from __future__ import annotations

import uuid

Id = str | uuid.UUID


def job_folder(tenant_id: Id, session_id: Id, job_id: Id) -> str:
    return f"{tenant_id}/{session_id}/{job_id}"


def original(tenant_id: Id, session_id: Id, job_id: Id, extension: str) -> str:
    """The uploaded photo's key; `extension` with its dot (`.jpg`)."""
    return f"{job_folder(tenant_id, session_id, job_id)}/original{extension}"


def _beside(original_key: str, name: str) -> str:
    return f"{original_key.rsplit('/', 1)[0]}/{name}"


def thumbnail(original_key: str) -> str:
    return _beside(original_key, "thumbnail.jpg")


def result(original_key: str) -> str:
    return _beside(original_key, "result.json")


def job_objects(original_key: str) -> tuple[str, str, str]:
    """Every object a job may have: its original, thumbnail and result (deleted with it)."""
    return original_key, thumbnail(original_key), result(original_key)
