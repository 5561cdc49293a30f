"""Response bodies more than one service answers: the error envelope, a session, a job as the
upload service creates it. Each service's own bodies live in that service."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
)

from tally_contracts.statuses import JobStatus
from tally_contracts.v1 import DetectionParams
from tally_db import Model

# A page of a session's jobs (GET /v1/sessions/{sid}/jobs, an SSE snapshot): its size unless
# `limit` says otherwise, and the largest `limit`. (The rate limiter charges pages by them.)
SESSION_PAGE: Final = 100
SESSION_PAGE_MAX: Final = 1000

# A moment as every Tally service writes it: datetime.isoformat() ("…+00:00", not pydantic's
# "…Z"), so a time read back from the projection or the records is answered unchanged.
Moment = Annotated[
    datetime,
    PlainSerializer(datetime.isoformat, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class ErrorBody(BaseModel):
    code: str = Field(examples=["not_found"], description="stable, for programs")
    message: str = Field(examples=["no job 0b5c…"], description="for people")


class ErrorEnvelope(BaseModel):
    """Every error of every service: `{"error": {"code": "...", "message": "..."}}`."""

    error: ErrorBody


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route's errors: each status answers the envelope."""
    return {status: {"model": ErrorEnvelope} for status in statuses}


class SessionParams(BaseModel):
    slice_size: int = Field(default=512, ge=256, le=2048, multiple_of=32)
    # Any overlap in range stays in it as a 32-bit float (0 and 0.5 are exact, rounding keeps
    # the order), well inside the [0, 0.9) the orchestrator's slicing takes.
    overlap: float = Field(default=0.25, ge=0.0, le=0.5)
    confidence: float = Field(default=0.35, gt=0.0, lt=1.0)
    # The detector: a model of the registry (GET /v1/models) by `name` or `name:version` (its
    # newest ready version); the default when absent. A session's answer names the version.
    model: str | None = Field(
        default=None, max_length=80, examples=["seedlings:1"], pattern=r"^[^\x00-\x1f\x7f]*$"
    )

    @field_validator("confidence")
    @classmethod
    def _confidence_as_carried(cls, value: float) -> float:
        """The detectors get a 32-bit float (DetectionParams' proto `float`): 0.99999999 is 1.0
        there and 1e-50 is 0.0, both out of the (0, 1) they take."""
        carried = DetectionParams(confidence=value).confidence
        if not 0.0 < carried < 1.0:
            raise ValueError(
                f"{value} is {carried:g} as the detectors get it (a 32-bit float); "
                "it must be strictly between 0 and 1"
            )
        return value


class ModelPublic(BaseModel):
    """A detector in the model registry: one version of a name."""

    model_config = ConfigDict(protected_namespaces=())  # `model_id` is the resource's name

    model_id: uuid.UUID
    name: str = Field(examples=["sticky-traps"])
    version: int = Field(ge=1)
    format: Literal["tally", "yolov8", "yolov5"]
    labels: list[str] = Field(examples=[["whitefly", "thrips"]])
    # The side of the square slices a static-shape model takes (a session's slice size); None:
    # any multiple of 32.
    input_size: int | None
    # validating: checked, its dry run on the inference server to come; failed: see `error`.
    status: Literal["validating", "ready", "failed"]
    error: str | None
    shared: bool  # an operator's model every tenant may use (else the tenant's own)
    default: bool  # what sessions that name no model run
    created_at: Moment

    @classmethod
    def of(cls, model: Model) -> ModelPublic:
        return cls(
            model_id=model.id,
            name=model.name,
            version=model.version,
            format=model.format,  # type: ignore[arg-type]
            labels=list(model.labels),
            input_size=model.input_size,
            status=model.status,
            error=model.error,
            shared=model.shared,
            default=model.is_default,
            created_at=model.created_at,
        )


class SessionPublic(BaseModel):
    """A session (one upload batch), as created and as listed."""

    session_id: uuid.UUID
    name: str = Field(examples=["tray 7"])
    params: SessionParams
    created_at: Moment


class JobBase(BaseModel):
    """A job (one photo) as the upload service answers it, queued; the gateway's jobs say more."""

    job_id: uuid.UUID
    image_id: uuid.UUID
    filename: str = Field(examples=["tray-1.jpg"])
    status: JobStatus
