"""The orchestrator's settings, from TALLY_* environment variables."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from tally_bus import BusFields
from tally_storage import S3Fields


class Settings(S3Fields, BusFields):
    model_config = SettingsConfigDict(env_prefix="TALLY_", extra="ignore")

    database_url: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/tally")
    # Slices per DetectChunk: small enough to spread a photo over detectors, large enough to
    # fill Triton batches (2 requests of 8).
    chunk_slices: int = Field(default=16, gt=0)
    prefetch: int = Field(default=8, gt=0)
    relay_interval_s: float = Field(default=1.0, gt=0)
    # A job `processing` without progress this long fails ("stalled"); checked this often.
    stalled_after_s: float = Field(default=600.0, gt=0)
    stalled_check_s: float = Field(default=30.0, gt=0)
    backlog_interval_s: float = Field(default=5.0, gt=0)  # how often /metrics' backlog is sampled
    shutdown_grace_s: float = Field(default=20.0, ge=0)
