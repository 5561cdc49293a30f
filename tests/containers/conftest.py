from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.containers.harness import ComposeStack, compose_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:
    """docker-compose.yml up with two detectors, on an edge port and project of its own."""
    with compose_stack(tmp_path_factory.mktemp("compose"), detectors=2) as running:
        yield running
