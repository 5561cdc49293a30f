"""The orchestrator's settings, from TALLY_* environment variables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from tally_storage import S3Fields

LOCAL_AMQP = "amqp://guest:guest@127.0.0.1:5672/"


class Settings(S3Fields):
    model_config = SettingsConfigDict(env_prefix="TALLY_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    database_url: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/tally")
    amqp_url: SecretStr = SecretStr(LOCAL_AMQP)
    bus_prefix: str = "tally"
    # Slices per DetectChunk: small enough to spread a photo over detectors, large enough to
    # fill Triton batches (2 requests of 8).
    chunk_slices: int = Field(default=16, gt=0)
    prefetch: int = Field(default=8, gt=0)
    relay_interval_s: float = Field(default=1.0, gt=0)
    shutdown_grace_s: float = Field(default=20.0, ge=0)

    @model_validator(mode="after")
    def _no_local_defaults_in_production(self) -> Settings:
        if self.environment == "production" and self.amqp_url.get_secret_value() == LOCAL_AMQP:
            raise ValueError("TALLY_AMQP_URL must be set in production (not guest@localhost)")
        return self
