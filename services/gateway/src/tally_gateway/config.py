"""The gateway's settings, from TALLY_* environment variables."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from tally_storage import S3Fields


class Settings(S3Fields):
    model_config = SettingsConfigDict(env_prefix="TALLY_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8002
    database_url: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/tally")
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    # What the gateway tells pollers: the default, shorter while a job is processing, longer when
    # every job of the session has finished.
    poll_interval_ms: int = Field(default=5000, ge=2000, le=60000)
    poll_interval_active_ms: int = Field(default=2000, ge=2000, le=60000)
    poll_interval_idle_ms: int = Field(default=30000, ge=2000, le=60000)
    shutdown_grace_s: float = Field(default=20.0, ge=0)
