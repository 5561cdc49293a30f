"""The detector's settings, from TALLY_* environment variables."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from tally_bus import BusFields
from tally_inference import SharedMemoryMode
from tally_storage import S3Fields

# Where the repository is when the detector runs from a checkout (the local stack, tests).
REPO_ROOT = Path(__file__).resolve().parents[4]


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
    # How long a chunk waits for Triton to serve its model (tally-models loads the models in use
    # after a Triton start) before it goes back to the queue.
    model_wait_s: float = Field(default=60.0, gt=0)


class ModelControlSettings(S3Fields):
    """`tally-models`, the model registry's hand on one Triton: PostgreSQL, the object store
    (the models' files) and that Triton's gRPC port."""

    model_config = SettingsConfigDict(env_prefix="TALLY_", extra="ignore")

    database_url: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/tally")
    triton_url: str = "127.0.0.1:8001"
    # The backend uploaded models run on: Triton's Python backend wrapping ONNX Runtime on CPU
    # (the local stack, CI; it loads `triton_python_model` beside each model), or Triton's ONNX
    # Runtime backend (GPU nodes).
    triton_backend: Literal["python", "onnxruntime"] = "python"
    triton_python_model: Path = REPO_ROOT / "deploy/triton/cpu/tally_detector/1/model.py"
    # A version no session with work left has used for this long is unloaded; past this many
    # loaded at once, the least recently used go first.
    model_idle_unload_s: float = Field(default=900.0, gt=0)
    model_max_loaded: int = Field(default=8, gt=0)
    model_poll_s: float = Field(default=2.0, gt=0)
