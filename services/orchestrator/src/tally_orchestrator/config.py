"""The orchestrator's settings, from TALLY_* environment variables."""

from __future__ import annotations

import uuid
from typing import Annotated, Final, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tally_bus import BusFields
from tally_storage import S3Fields


class Settings(S3Fields, BusFields):
    model_config = SettingsConfigDict(env_prefix="TALLY_", extra="ignore")

    database_url: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/tally")
    # Slices per DetectChunk: small enough to spread a photo over detectors, large enough to
    # fill Triton batches; chunks are whole batches of `chunk_batch` (the detectors'
    # TALLY_BATCH_SIZE), so that no Triton request but a photo's last runs part-full.
    chunk_slices: int = Field(default=16, gt=0)
    chunk_batch: int = Field(default=8, gt=0)
    prefetch: int = Field(default=8, gt=0)
    # Fair dispatch (dispatch.py): chunks out with the detectors at once, per detector
    # consuming their queue (two in hand, one ready) and at least `dispatch_min`; per tenant at
    # most `tenant_max_in_flight`, or its own limit (TALLY_TENANT_LIMITS='{"<tenant id>": 4}').
    dispatch_per_detector: int = Field(default=3, gt=0)
    dispatch_min: int = Field(default=2, gt=0)
    dispatch_interval_s: float = Field(default=0.5, gt=0)
    tenant_max_in_flight: int = Field(default=8, gt=0)
    tenant_limits: dict[uuid.UUID, Annotated[int, Field(gt=0)]] = Field(default_factory=dict)
    # A chunk out this long without a result while no chunk waits for a detector was lost (its
    # message is gone): it is sent again, up to `chunk_max_dispatches` times in all, then its
    # job fails.
    chunk_lost_after_s: float = Field(default=300.0, gt=0)
    chunk_max_dispatches: int = Field(default=2, gt=0)
    relay_interval_s: float = Field(default=1.0, gt=0)
    # A job `processing` without progress this long fails ("stalled"); checked this often.
    stalled_after_s: float = Field(default=600.0, gt=0)
    stalled_check_s: float = Field(default=30.0, gt=0)
    backlog_interval_s: float = Field(default=5.0, gt=0)  # how often /metrics' backlog is sampled
    # The wait model (_waits.py): every open session's ETA is estimated this often, and at once
    # (but not more often than `eta_min_interval_s`) when the world changes; the detectors'
    # capacity is measured over the last `eta_window_s` seconds of work.
    eta_interval_s: float = Field(default=1.0, gt=0)
    eta_min_interval_s: float = Field(default=0.25, ge=0)
    eta_window_s: float = Field(default=60.0, gt=0)
    shutdown_grace_s: float = Field(default=20.0, ge=0)


# The Standard Webhooks specification's example schedule: immediately, then 5 s, 5 min, 30 min,
# 2 h, 5 h, 10 h, 14 h, 20 h and 24 h after each failure (about 3 days in all).
RETRY_SCHEDULE_S: Final = (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)


class WebhookSettings(BaseSettings):
    """`tally-webhooks`, the sender of webhook deliveries: PostgreSQL and the receivers only."""

    model_config = SettingsConfigDict(env_prefix="TALLY_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    database_url: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/tally")
    # Hosts (names) and networks (CIDRs) a webhook may reach although they are not public
    # (the local stack and tests: loopback). The gateway reads the same setting.
    webhook_allow_hosts: str = ""
    # Seconds before each attempt after the first (which is the schedule's first entry, after
    # the event); a delivery that fails them all is given up. Each is moved by ±jitter.
    webhook_retry_schedule_s: str = ",".join(str(s) for s in RETRY_SCHEDULE_S)
    webhook_jitter: float = Field(default=0.2, ge=0, lt=1)
    webhook_timeout_s: float = Field(default=15.0, gt=0, le=15.0)  # a whole attempt
    # An endpoint whose every attempt has failed for this long is disabled (5 days).
    webhook_disable_after_s: float = Field(default=5 * 86400.0, gt=0)
    webhook_concurrency: int = Field(default=32, gt=0)  # attempts at once, this process
    webhook_endpoint_concurrency: int = Field(default=4, gt=0)  # at once to one endpoint
    webhook_poll_s: float = Field(default=1.0, gt=0)  # besides being woken by new events
    webhook_response_cap: int = Field(default=4096, ge=0)  # bytes of an answer read, at most
    webhook_retention_days: float = Field(default=30.0, gt=0)  # finished events kept
    shutdown_grace_s: float = Field(default=20.0, ge=0)

    def allow(self) -> list[str]:
        return self.webhook_allow_hosts.split(",")

    def schedule(self) -> tuple[float, ...]:
        return tuple(float(s) for s in self.webhook_retry_schedule_s.split(","))

    @field_validator("webhook_retry_schedule_s")
    @classmethod
    def _schedule_of_seconds(cls, value: str) -> str:
        try:
            seconds = [float(s) for s in value.split(",")]
        except ValueError:
            raise ValueError("a comma-separated list of seconds, e.g. 0,5,300") from None
        if not seconds or any(s < 0 for s in seconds):
            raise ValueError("at least one delay, none negative")
        return value
