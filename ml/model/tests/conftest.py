from __future__ import annotations

import os

import pytest

try:
    import torch  # noqa: F401

    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Training tests need torch (`make torch`); CI must never skip them silently."""
    if HAVE_TORCH:
        return
    if os.environ.get("CI"):
        raise pytest.UsageError("PyTorch is missing in CI: run `make torch` first")
    skip = pytest.mark.skip(reason="PyTorch not installed (make torch)")
    for item in items:
        if "training" in item.keywords:
            item.add_marker(skip)
