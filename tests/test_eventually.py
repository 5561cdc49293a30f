"""The tests' one way to wait: `eventually` gives the first true answer, or fails with the last."""

from __future__ import annotations

import itertools
import re
import time

import pytest

from tests.eventually import eventually, eventually_async


def test_it_returns_the_first_true_answer() -> None:
    answers: list[list[int] | None] = [None, [], [7]]
    assert eventually(lambda: answers.pop(0), every_s=0) == [7]


def test_it_fails_after_the_timeout_with_the_last_answer() -> None:
    counter = itertools.count()
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"^jobs done: still not true after 0\.3 s; last: 0$"):
        eventually(lambda: next(counter) and 0, 0.3, every_s=0.05, what="jobs done")
    assert 0.3 <= time.monotonic() - started < 2
    assert next(counter) > 2  # it asked several times


def test_ignored_exceptions_mean_not_yet_and_others_fail_at_once() -> None:
    refusals = [2]

    def probe() -> str:
        if refusals[0] > 0:
            refusals[0] -= 1
            raise ConnectionError("refused")
        return "up"

    assert eventually(probe, every_s=0, ignoring=(ConnectionError,)) == "up"
    refusals[0] = 1
    with pytest.raises(ConnectionError):
        eventually(probe, every_s=0)  # nothing is ignored unless asked


def test_a_failure_names_the_check_and_its_last_exception() -> None:
    def gateway_ready() -> bool:
        raise ConnectionError("refused")

    expected = "gateway_ready: still not true after 0.1 s; last: ConnectionError('refused')"
    with pytest.raises(AssertionError, match=f"^{re.escape(expected)}$"):
        eventually(gateway_ready, 0.1, every_s=0.02, ignoring=(ConnectionError,))


async def test_the_async_one_awaits_coroutines_and_takes_plain_checks() -> None:
    answers = ["", "", "done"]

    async def check() -> str:
        return answers.pop(0)

    assert await eventually_async(check, every_s=0) == "done"
    flags = [False, True]
    assert await eventually_async(lambda: flags.pop(0), every_s=0) is True
    with pytest.raises(AssertionError, match=r"^<lambda>: still not true after 0\.1 s; last: 0$"):
        await eventually_async(lambda: 0, 0.1, every_s=0.02)


def test_until_judges_the_answer_and_a_failure_shows_the_last_one() -> None:
    polls = iter({"completed": n} for n in range(100))
    assert eventually(lambda: next(polls), every_s=0, until=lambda s: s["completed"] >= 2) == {
        "completed": 2
    }
    with pytest.raises(AssertionError, match=r"last: \{'completed': \d+\}$"):
        eventually(lambda: next(polls), 0.1, every_s=0.02, until=lambda s: s["completed"] < 0)
