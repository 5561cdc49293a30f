"""tally-healthcheck: the container is healthy when its service's /readyz answers 200."""

from __future__ import annotations

import asyncio

from tally_telemetry.healthcheck import probe_urls, ready
from tally_worker import Probes


def test_both_ports_are_probed_and_an_unset_one_is_left_out() -> None:
    assert probe_urls({"TALLY_PORT": "8000", "TALLY_PROBES_PORT": "9000"}) == [
        "http://127.0.0.1:8000/readyz",
        "http://127.0.0.1:9000/readyz",
    ]
    assert probe_urls({"TALLY_PROBES_PORT": "9000"}) == ["http://127.0.0.1:9000/readyz"]
    assert probe_urls({}) == []


async def test_ready_only_while_the_probes_say_ready() -> None:
    probes = Probes()
    port = await probes.start("127.0.0.1", 0)
    url = f"http://127.0.0.1:{port}/readyz"
    try:
        assert not await asyncio.to_thread(ready, url, 2.0)  # nothing registered yet

        async def check() -> dict[str, bool]:
            return {"bus": True}

        probes.readiness = check
        assert await asyncio.to_thread(ready, url, 2.0)
        probes.stopping = True
        assert not await asyncio.to_thread(ready, url, 2.0)
    finally:
        await probes.close()
    assert not await asyncio.to_thread(ready, url, 2.0)  # nothing listening
