"""The detector's settings, from TALLY_* environment variables."""

from __future__ import annotations

import socket
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from tally_storage import S3Fields

LOCAL_AMQP = "amqp://guest:guest@127.0.0.1:5672/"


class Settings(S3Fields):
    model_config = SettingsConfigDict(env_prefix="TALLY_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    amqp_url: SecretStr = SecretStr(LOCAL_AMQP)
    bus_prefix: str = "tally"
    triton_url: str = "127.0.0.1:8001"  # gRPC
    detector_id: str = Field(default_factory=socket.gethostname)
    # One chunk at a time per process: a chunk already keeps Triton busy with several batches.
    prefetch: int = Field(default=1, gt=0)
    batch_size: int = Field(default=8, gt=0)
    max_in_flight: int = Field(default=2, gt=0)
    shutdown_grace_s: float = Field(default=30.0, ge=0)

    @model_validator(mode="after")
    def _no_local_defaults_in_production(self) -> Settings:
        if self.environment == "production" and self.amqp_url.get_secret_value() == LOCAL_AMQP:
            raise ValueError("TALLY_AMQP_URL must be set in production (not guest@localhost)")
        return self
