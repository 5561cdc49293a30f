"""The orchestrator's settings, from TALLY_* environment variables."""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

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
    shutdown_grace_s: float = Field(default=20.0, ge=0)
