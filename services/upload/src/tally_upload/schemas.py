"""The upload service's response bodies (a session is tally_web's SessionPublic)."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, Field

from tally_web.schemas import ErrorEnvelope, JobBase


class PhotoRejection(BaseModel):
    """A file of the request that was refused, and why."""

    filename: str = Field(examples=["broken.jpg"])
    code: str = Field(
        examples=[
            "file_too_large",
            "unsupported_format",
            "empty_file",
            "corrupt_image",
            "too_many_slices",
            "request_pixel_limit",
        ]
    )
    message: str


class JobQueued(JobBase):
    """A job as the upload queues it, with what it costs."""

    planned_slices: int = Field(
        ge=0, description="the slices the photo plans with the session's params (SAHI)"
    )


class PhotosAccepted(BaseModel):
    """202: a queued job for each good file; the refused ones, if any, in `rejected`."""

    session_id: uuid.UUID
    jobs: list[JobQueued]
    planned_slices: int = Field(ge=0, description="of every job queued by this request")
    rejected: list[PhotoRejection]


class PhotosRefused(ErrorEnvelope):
    """4xx when every file of the request was refused: the envelope, with the same lists."""

    jobs: list[JobBase] = Field(max_length=0, description="always empty")
    rejected: list[PhotoRejection]
