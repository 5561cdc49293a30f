from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tally_stack.local_triton import LocalTriton

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTriton]:
    """A real tritonserver (CPU, Python backend + ONNX Runtime) with the committed model."""
    server = LocalTriton(runtime_dir=tmp_path_factory.mktemp("triton"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
