"""The upload service's settings, from TALLY_* environment variables."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from tally_bus import BusFields
from tally_storage import S3Fields


class Settings(S3Fields, BusFields):
    model_config = SettingsConfigDict(env_prefix="TALLY_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8001

    database_url: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/tally")
    # Where the rate limits' buckets are, shared with the gateway (while Redis is away the
    # limits hold in this process: readiness does not depend on it).
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    # How long this process trusts an API key it has looked up (a revoked key works here for
    # at most this long); 0 looks every request up.
    api_key_cache_s: float = Field(default=10.0, ge=0, le=60)

    max_file_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    # An uploaded model's ONNX file (POST /v1/models): the edge's limit of that route is above it.
    max_model_bytes: int = Field(default=256 * 1024 * 1024, gt=0)
    max_files_per_request: int = Field(default=100, gt=0)
    max_pixels: int = Field(default=100_000_000, gt=0)
    # A request over this (by its Content-Length, or as it streams) is refused: the edge's limit.
    max_request_bytes: int = Field(default=512 * 1024 * 1024, gt=0)
    # Pixels this process may be decoding at once (a 100 MP grey PNG is ~100 MB decoded, RGB
    # 4 bytes a pixel): one photo at the pixel limit at a time, with room for smaller ones.
    decode_pixel_budget: int = Field(default=150_000_000, gt=0)
    # How long a decode waits for room in the budget before its file is refused as `busy`.
    decode_wait_s: float = Field(default=10.0, gt=0)
    thumbnail_size: int = Field(default=320, gt=16)
    relay_interval_s: float = Field(default=1.0, gt=0)
    shutdown_grace_s: float = Field(default=20.0, ge=0)
