"""The test harness itself: a test that blocks the event loop must not pass."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT_CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"


def test_a_test_that_blocks_the_event_loop_fails(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(ROOT_CONFTEST.read_text())
    pytester.makepyfile(
        """
        import asyncio
        import time

        async def test_blocks():
            time.sleep(1.3)

        async def test_awaits():
            await asyncio.sleep(1.3)
        """
    )
    result = pytester.runpytest_subprocess(
        "-p",
        "asyncio",
        "-o",
        "asyncio_mode=auto",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*the event loop was blocked*"])
