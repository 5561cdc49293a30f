"""The detector's settings, from TALLY_* environment variables."""

from __future__ import annotations

import socket

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from tally_bus import BusFields
from tally_inference import SharedMemoryMode
from tally_storage import S3Fields


class Settings(S3Fields, BusFields):
    model_config = SettingsConfigDict(env_prefix="TALLY_", extra="ignore")

    triton_url: str = "127.0.0.1:8001"  # gRPC
    # Slices reach Triton through a system shared-memory region (/dev/shm) when Triton can map
    # this host's ("auto": else inside the gRPC request, as with "off"; "on": or fail). Triton
    # on the same host or in the same pod with a shared /dev/shm; saves copying 6 MB a request.
    triton_shared_memory: SharedMemoryMode = "auto"
    # Where the gateway marks cancelled jobs and sessions (tally_contracts.cancellation).
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    detector_id: str = Field(default_factory=socket.gethostname)
    # Two chunks at a time, one Triton request in flight each: while one chunk turns around
    # (result published, acknowledged, the next delivered: ~100 ms) the other keeps Triton busy.
    # One chunk with two requests left Triton idle ~30 % of the time (make bench-pipeline: ratio
    # 0.66 against 0.83); two chunks with two requests each made Triton merge batches of 16,
    # slower per slice on CPU.
    prefetch: int = Field(default=2, gt=0)
    batch_size: int = Field(default=8, gt=0)
    max_in_flight: int = Field(default=1, gt=0)
    shutdown_grace_s: float = Field(default=30.0, ge=0)
