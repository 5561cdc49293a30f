"""The upload service's response bodies (a session is tally_web's SessionPublic)."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, Field

from tally_web.schemas import ErrorEnvelope, JobBase


class PhotoRejection(BaseModel):
    """A file of the request that was refused, and why."""

    filename: str = Field(examples=["broken.jpg"])
    code: str = Field(
        examples=["file_too_large", "unsupported_format", "empty_file", "corrupt_image"]
    )
    message: str


class PhotosAccepted(BaseModel):
    """202: a queued job for each good file; the refused ones, if any, in `rejected`."""

    session_id: uuid.UUID
    jobs: list[JobBase]
    rejected: list[PhotoRejection]


class PhotosRefused(ErrorEnvelope):
    """4xx when every file of the request was refused: the envelope, with the same lists."""

    jobs: list[JobBase] = Field(max_length=0, description="always empty")
    rejected: list[PhotoRejection]
