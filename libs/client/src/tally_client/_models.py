"""The API's answers as typed models, for `AsyncTally` and webhook receivers: the gateway's
public schemas (services/gateway/src/tally_gateway/schemas.py, tally_web.schemas, the upload
service's) written again by hand, since a client cannot import a service. They are tolerant:
fields the server adds later are kept (`extra="allow"`), a field it may leave out has a
default, and identifiers and statuses are plain strings."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class Summary(Model):
    """A session's jobs by status, its progress in slices and its ETA."""

    total: int
    queued: int = 0
    processing: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    overall_progress_percent: float | None = None
    eta_seconds: float | None = None  # as of eta_at
    eta_range: tuple[float, float] | None = None  # an 80 % interval
    eta_reason: str | None = None  # why eta_seconds is null: no_detector, measuring
    eta_at: datetime | None = None


class ResultSummary(Model):
    counts: dict[str, int] = Field(default_factory=dict)


class Job(Model):
    """A job (one photo) as polling, the job list and the event stream show it."""

    job_id: str
    status: str
    image_id: str | None = None
    session_id: str | None = None
    filename: str | None = None
    phase: str = ""
    progress_percent: float | None = None
    processed: int = 0
    total: int = 0
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    updated_at: datetime | None = None
    eta_seconds: float | None = None  # as of eta_at
    eta_range: tuple[float, float] | None = None  # an 80 % interval
    eta_reason: str | None = None  # why an open job's eta_seconds is null
    eta_at: datetime | None = None
    error_message: str | None = None
    warnings: list[str] = Field(default_factory=list)
    thumbnail_url: str = ""
    result: ResultSummary | None = None
    revision: int | None = None

    @property
    def final(self) -> bool:
        return self.status in ("completed", "failed", "cancelled")


class LogEntry(Model):
    at: datetime
    event: str
    source: str = ""
    sequence: int = 0
    message: str | None = None


class JobDetail(Job):
    """GET /v1/jobs/{job_id}: a job with its recent log entries, newest first."""

    logs: list[LogEntry] = Field(default_factory=list)


class SessionPage(Model):
    """GET /v1/sessions/{sid}/jobs: a page of the session's jobs (oldest first) and its
    summary; with `since`, a delta: the jobs changed after that version."""

    session_id: str
    version: str | None = None
    jobs: list[Job]
    summary: Summary
    last_updated: datetime | None = None
    poll_interval_ms: int | None = None
    next_cursor: str | None = None
    since: str | None = None
    deleted: list[str] = Field(default_factory=list)
    more: bool = False
    reload: bool = False


class SessionState(Model):
    """A whole session as following or polling it gives: every job (oldest first) and the
    summary (None while a resumed stream has not sent one)."""

    session_id: str
    jobs: list[Job]
    summary: Summary | None = None
    version: str | None = None
    poll_interval_ms: int | None = None

    @property
    def finished(self) -> bool:
        """Every job of the session has finished (and it has some)."""
        s = self.summary
        return s is not None and bool(s.total) and not s.queued and not s.processing


class QueuedJob(Model):
    job_id: str
    image_id: str
    filename: str
    status: str
    planned_slices: int | None = None


class Rejection(Model):
    filename: str
    code: str
    message: str


class Upload(Model):
    """POST /v1/sessions/{sid}/photos: a queued job for each good file, the refused ones in
    `rejected` (every file refused: no job)."""

    session_id: str | None = None
    jobs: list[QueuedJob]
    planned_slices: int = 0
    rejected: list[Rejection] = Field(default_factory=list)


class Cancelling(Model):
    """202 to a cancel: `session_id` and `jobs` (those not finished) or `job_id`."""

    status: str
    session_id: str | None = None
    job_id: str | None = None
    jobs: int | None = None


class Detection(Model):
    bbox: list[float] = Field(description="x1, y1, x2, y2 in original-image pixels")
    score: float
    label: str


class ResultModel(Model):
    """The registry's model a result came from; the counts have one per label."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    model_id: str
    name: str
    version: int
    labels: list[str]


class JobResult(Model):
    """GET /v1/jobs/{job_id}/result."""

    job_id: str
    width: int
    height: int
    counts: dict[str, int]
    detections: list[Detection]
    model: ResultModel | None = None  # None: a result from before the model registry


class RegisteredModel(Model):
    """A detector of the model registry (GET /v1/models): one version of a name."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    model_id: str
    name: str
    version: int
    format: str  # tally | yolov8 | yolov5
    labels: list[str]
    input_size: int | None = None
    status: str  # validating | ready | failed
    error: str | None = None
    shared: bool = False
    default: bool = False
    created_at: datetime | None = None

    @property
    def reference(self) -> str:
        """What a session's `params.model` names it by."""
        return f"{self.name}:{self.version}"


class Webhook(Model):
    webhook_id: str
    url: str
    events: list[str]
    description: str | None = None
    enabled: bool = True
    disabled_reason: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class CreatedWebhook(Webhook):
    """POST /v1/webhooks: the webhook and its signing secret, shown this once."""

    secret: str


class SecretRotation(Model):
    """POST /v1/webhooks/{id}/rotate-secret: the new secret; the previous one signs too until
    `previous_secret_expires_at`."""

    webhook_id: str
    secret: str
    previous_secret_expires_at: datetime | None = None


class DeliveryAttempt(Model):
    attempt: int
    at: datetime
    status_code: int | None = None
    latency_ms: float | None = None
    error: str | None = None


class Delivery(Model):
    delivery_id: str
    webhook_id: str
    event_id: str
    event_type: str
    status: str = Field(description="pending, succeeded or failed")
    attempts: list[DeliveryAttempt] = Field(default_factory=list)
    next_attempt_at: datetime | None = None
    created_at: datetime | None = None


class DeliveryPage(Model):
    deliveries: list[Delivery]
    next_cursor: str | None = None


class JobEventData(Model):
    """The `data` of `job.completed`, `job.failed` and `job.cancelled`."""

    job_id: str
    session_id: str
    status: str
    image_id: str | None = None
    filename: str | None = None
    counts: dict[str, int] = Field(default_factory=dict)
    detections: int = 0
    warnings: list[str] = Field(default_factory=list)
    error_code: str | None = None
    error_message: str | None = None
    created_at: datetime | None = None
    completed_at: datetime | None = None


class SessionOutcome(Model):
    total: int
    completed: int = 0
    failed: int = 0
    cancelled: int = 0


class SessionEventData(Model):
    """The `data` of `session.completed`."""

    session_id: str
    name: str = ""
    summary: SessionOutcome
    counts: dict[str, int] = Field(default_factory=dict)
    completed_at: datetime | None = None


class WebhookEvent(Model):
    """A webhook's body: `{type, timestamp, data}` (Standard Webhooks' payload structure)."""

    type: str
    timestamp: datetime
    data: dict[str, Any]

    def job(self) -> JobEventData:
        """The data of a `job.*` event."""
        return JobEventData.model_validate(self.data)

    def session(self) -> SessionEventData:
        """The data of a `session.*` event."""
        return SessionEventData.model_validate(self.data)
