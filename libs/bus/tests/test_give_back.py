"""A message whose next step the broker cannot take goes back to its queue (unit, fakes)."""

from __future__ import annotations

from typing import Any, cast

import pytest
from aio_pika.abc import AbstractIncomingMessage

from tally_bus import _bus
from tally_bus.topology import Topology


class FakeIncoming:
    def __init__(self, *, fail: bool = False) -> None:
        self.nacks: list[bool] = []
        self.fail = fail

    async def nack(self, requeue: bool = True) -> None:
        if self.fail:
            raise RuntimeError("the channel is closed")
        self.nacks.append(requeue)


@pytest.fixture(autouse=True)
def _no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_bus, "GIVE_BACK_PAUSE_S", 0.0)


async def test_it_is_returned_to_its_queue() -> None:
    incoming = FakeIncoming()
    spec: Any = Topology("t").chunks_queue
    await _bus._give_back(cast(AbstractIncomingMessage, incoming), spec, TimeoutError())
    assert incoming.nacks == [True]


async def test_a_closed_channel_is_no_error_the_broker_returns_it_by_itself() -> None:
    incoming = FakeIncoming(fail=True)
    spec: Any = Topology("t").chunks_queue
    await _bus._give_back(cast(AbstractIncomingMessage, incoming), spec, TimeoutError())
    assert incoming.nacks == []
