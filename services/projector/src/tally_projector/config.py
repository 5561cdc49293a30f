"""The projector's settings, from TALLY_* environment variables."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from tally_bus import BusFields


class Settings(BusFields):
    model_config = SettingsConfigDict(env_prefix="TALLY_", extra="ignore")

    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    database_url: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/tally")
    # Events fold independently (each is atomic and idempotent), so many may be in hand at once.
    prefetch: int = Field(default=64, gt=0)
    shutdown_grace_s: float = Field(default=10.0, ge=0)
