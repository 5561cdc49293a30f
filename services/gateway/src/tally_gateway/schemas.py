"""The gateway's response bodies, as `_views` builds them and the routes answer them. The poll
body is serialised by hand, once per session version (routes/sessions.py); PollBody describes
it, and the tests check every answer against these schemas."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Literal, NotRequired

from pydantic import BaseModel, ConfigDict, Field, RootModel
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from tally_web.schemas import JobBase, Moment, SessionPublic

Percent = Annotated[float, Field(ge=0, le=100)]
EtaRange = Annotated[list[float], Field(min_length=2, max_length=2, examples=[[180.0, 360.0]])]
EtaReason = Literal["no_detector", "measuring"]


class Summary(BaseModel):
    """A session's jobs by status, its progress in slices and its ETA."""

    total: int = Field(description="jobs in the session")
    queued: int
    processing: int
    completed: int
    failed: int
    cancelled: int
    overall_progress_percent: Percent | None = Field(
        description="slices done of slices planned; null while nothing is planned"
    )
    eta_seconds: float | None = Field(
        description="seconds until the session's last open job is done, as of `eta_at` (the "
        "wait model's best estimate; before its first, the session's measured throughput); 0 "
        "when nothing is open, null when nothing can be estimated (see `eta_reason`)"
    )
    eta_range: EtaRange | None = Field(
        description="an 80 % interval [low, high] around `eta_seconds`, in seconds as of "
        "`eta_at`; null without an estimate of the wait model"
    )
    eta_reason: EtaReason | None = Field(
        description="why `eta_seconds` is null: no detector is running, or the detectors have "
        "not worked long enough to measure their rate"
    )
    eta_at: Moment | None = Field(description="when the ETA was estimated (count down from it)")


class ResultSummary(BaseModel):
    counts: dict[str, int] = Field(examples=[{"seedling": 2, "weed": 0}])


class JobPublic(JobBase):
    """A job (one photo) as polling, the job list and the event stream show it."""

    # Unknown until the job's `queued` event has been folded (events may arrive out of order).
    image_id: uuid.UUID | None  # type: ignore[assignment]
    filename: str | None  # type: ignore[assignment]
    session_id: uuid.UUID
    phase: str = Field(examples=["queued", "planned", "detecting", "done"])
    progress_percent: Percent | None = Field(description="null until the job is planned")
    processed: int = Field(description="slices done")
    total: int = Field(description="slices planned; 0 until planned")
    created_at: Moment | None
    started_at: Moment | None
    completed_at: Moment | None
    updated_at: Moment | None
    eta_seconds: float | None = Field(
        description="seconds until the job is done, as of `eta_at`, with queued jobs waiting "
        "for what their tenant uploaded before them; null when it is final or nothing can be "
        "estimated (see `eta_reason`)"
    )
    eta_range: EtaRange | None = Field(description="an 80 % interval [low, high], as of eta_at")
    eta_reason: EtaReason | None = Field(description="why an open job's eta_seconds is null")
    eta_at: Moment | None = Field(description="when the ETA was estimated")
    error_message: str | None
    warnings: list[str] = Field(examples=[["no_detections"]])
    thumbnail_url: str = Field(examples=["/v1/jobs/0b5c…/thumbnail"])
    result: ResultSummary | None = Field(description="counts per label once completed")
    revision: int | None = Field(
        default=None,
        description="the session's rev at the job's last change: of two copies of a job, the "
        "one with the higher revision is newer (null when read from the system of record)",
    )


class LogEntry(TypedDict):
    """One entry of a job's log, as the projector writes it. A TypedDict, not a model: entries
    without a message (queued, cancelled) have no `message` key rather than a null one."""

    at: Moment
    event: str
    source: str
    sequence: int
    message: NotRequired[str]


class JobDetail(JobPublic):
    logs: list[LogEntry] = Field(description="recent entries, newest first")


class JobPage(BaseModel):
    """A page of the job list; `next_cursor` asks for the next one."""

    jobs: list[JobPublic]
    next_cursor: str | None
    poll_interval_ms: int


class SessionDetail(SessionPublic):
    summary: Summary


class SessionList(BaseModel):
    sessions: list[SessionPublic]


class PollBody(BaseModel):
    """GET /v1/sessions/{sid}/jobs: a page of the session's jobs (oldest first) and its
    summary; with `since`, the jobs that changed after that version instead (a delta)."""

    session_id: uuid.UUID
    version: str | None = Field(
        description="where the session stood (`epoch.rev`): send it back as `since` for the "
        "changes after it; null when read from the system of record (no deltas then)",
        examples=["1764608400123.42"],
    )
    jobs: list[JobPublic] = Field(description="a page of jobs, or a delta's changed jobs")
    summary: Summary
    last_updated: Moment | None
    poll_interval_ms: int = Field(description="when to poll again")
    next_cursor: str | None = Field(
        default=None, description="a page: `cursor` for the next page; null on the last"
    )
    since: str | None = Field(default=None, description="a delta: the version it starts after")
    deleted: list[uuid.UUID] = Field(
        default_factory=list, description="a delta: jobs deleted after `since`"
    )
    more: bool = Field(
        default=False,
        description="a delta: more changes than `limit`; ask again at once with `version`",
    )
    reload: bool = Field(
        default=False,
        description="`since` is too old (the projection was rebuilt since): this is the first "
        "page instead; reload the list from it",
    )


class SessionCancel(BaseModel):
    session_id: uuid.UUID
    status: Literal["cancelling"]
    jobs: int = Field(description="jobs that had not finished")


class JobCancel(BaseModel):
    job_id: uuid.UUID
    status: Literal["cancelling"]


class Detection(BaseModel):
    bbox: list[float] = Field(
        min_length=4, max_length=4, description="x1, y1, x2, y2 in original-image pixels"
    )
    score: float
    label: str


class ResultModel(BaseModel):
    """The registry's model a result came from; its labels are the counts' keys."""

    model_config = ConfigDict(protected_namespaces=())

    model_id: uuid.UUID
    name: str = Field(examples=["seedlings"])
    version: int
    labels: list[str] = Field(examples=[["seedling", "weed"]])


class JobResult(BaseModel):
    job_id: uuid.UUID
    width: int
    height: int
    counts: dict[str, int]
    detections: list[Detection]
    # null for results from before the model registry (the built-in model's).
    model: ResultModel | None = None


class CocoInfo(BaseModel):
    description: str
    version: str
    year: int
    contributor: str
    date_created: str


class CocoImage(BaseModel):
    id: int = Field(description="1, 2, … in the session's upload order, within this document")
    file_name: str
    width: int
    height: int
    tally_job_id: uuid.UUID = Field(description="the job this image is")


class CocoCategory(BaseModel):
    id: int
    name: str = Field(examples=["seedling"])
    supercategory: str


class CocoAnnotation(BaseModel):
    id: int
    image_id: int
    category_id: int
    bbox: list[float] = Field(
        min_length=4, max_length=4, description="x, y, width, height in original-image pixels"
    )
    area: float
    segmentation: list[list[float]] = Field(description="the box as a polygon")
    iscrowd: Literal[0]
    score: float


class CocoDocument(BaseModel):
    """A COCO detection document (cocodataset.org/#format-data)."""

    info: CocoInfo
    licenses: list[dict[str, str]]
    annotations: list[CocoAnnotation]
    images: list[CocoImage]
    categories: list[CocoCategory]


class JobResultAnswer(RootModel[JobResult | CocoDocument]):
    """A job's result: Tally's own (the default), or with `format=coco` a COCO document."""


class StreamToken(BaseModel):
    token: str
    session_id: uuid.UUID
    expires_at: Moment
    expires_in: int = Field(description="seconds")


class UsageTotals(BaseModel):
    photos: int = Field(description="photos accepted")
    slices: int = Field(
        description="slices planned, less those refunded (a cancelled or failed job's "
        "unprocessed slices go back to the day it was uploaded)"
    )
    bytes: int = Field(description="bytes of the photos accepted")


class UsageOfDay(UsageTotals):
    day: date = Field(description="a UTC day")


class QueuedWork(BaseModel):
    """The tenant's jobs queued or processing: their count and the slices they have left."""

    photos: int
    slices: int


class UsageLimits(BaseModel):
    """The tenant's quotas and bounds (its own values, else the service's defaults)."""

    queued_slices: int
    queued_photos: int
    daily_slices: int
    monthly_slices: int
    max_slices_per_photo: int
    max_pixels_per_request: int


class Usage(BaseModel):
    """GET /v1/usage: what the tenant used each UTC day from `from` to `to` (both included,
    days without any as zeros), what is queued now, and its limits."""

    tenant_id: uuid.UUID
    from_: date = Field(alias="from")
    to: date
    days: list[UsageOfDay]
    totals: UsageTotals
    queued: QueuedWork
    limits: UsageLimits


# Webhooks (Standard Webhooks v1): endpoints, their secrets, their deliveries.

EventTypeName = Literal["job.completed", "job.failed", "job.cancelled", "session.completed"]
WebhookUrl = Annotated[
    str,
    Field(
        min_length=1,
        max_length=2048,
        description="https (http only outside production); must not reach private, loopback, "
        "link-local or other internal addresses",
        examples=["https://example.com/hooks/tally"],
    ),
]
WebhookEvents = Annotated[list[EventTypeName], Field(min_length=1, max_length=4)]
Description = Annotated[str, Field(max_length=500)]


class WebhookCreate(BaseModel):
    model_config = {"extra": "forbid"}

    url: WebhookUrl
    events: WebhookEvents
    description: Description = ""


class WebhookUpdate(BaseModel):
    model_config = {"extra": "forbid"}

    url: WebhookUrl | None = None
    events: WebhookEvents | None = None
    description: Description | None = None
    enabled: bool | None = None


class WebhookPublic(BaseModel):
    webhook_id: uuid.UUID
    url: str
    events: list[EventTypeName]
    description: str
    enabled: bool
    disabled_reason: str | None = Field(
        description="why it was disabled: 410 Gone, failing too long, or on request"
    )
    failing_since: Moment | None = Field(description="every attempt since then has failed")
    created_at: Moment
    updated_at: Moment


class WebhookCreated(WebhookPublic):
    secret: str = Field(
        description="the signing secret, shown only here and when rotated",
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    )


class WebhookList(BaseModel):
    webhooks: list[WebhookPublic]


class SecretRotated(BaseModel):
    webhook_id: uuid.UUID
    secret: str = Field(description="the new signing secret, shown only here")
    previous_secret_expires_at: Moment = Field(
        description="until then the secret before it still signs too (both signatures sent)"
    )


class DeliveryAttempt(BaseModel):
    attempt: int
    at: Moment
    status_code: int | None = Field(description="null when no answer came")
    latency_ms: int
    error: str | None


class Delivery(BaseModel):
    delivery_id: uuid.UUID
    webhook_id: uuid.UUID
    event_id: str = Field(description="the `webhook-id` header: the same on every attempt")
    event_type: EventTypeName
    status: Literal["pending", "succeeded", "failed"]
    attempts: list[DeliveryAttempt]
    next_attempt_at: Moment | None
    created_at: Moment


class DeliveryPage(BaseModel):
    deliveries: list[Delivery]
    next_cursor: str | None
