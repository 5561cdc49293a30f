"""A worker's probes over real HTTP."""

from __future__ import annotations

import httpx

from tally_worker import Probes


async def test_readiness_follows_the_checks_and_turns_false_when_stopping() -> None:
    probes = Probes()
    port = await probes.start("127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/healthz")).json() == {"status": "ok"}
            assert (await http.get("/readyz")).status_code == 503  # nothing connected yet
            bus_up = True

            async def check() -> dict[str, bool]:
                return {"bus": bus_up}

            probes.readiness = check
            assert (await http.get("/readyz")).status_code == 200
            bus_up = False
            answer = await http.get("/readyz")
            assert (answer.status_code, answer.json()["checks"]["bus"]) == (503, False)
            bus_up = True
            probes.stopping = True  # SIGTERM: not ready before anything else happens
            assert (await http.get("/readyz")).json()["checks"]["running"] is False
            assert "python_info" in (await http.get("/metrics")).text
            assert (await http.get("/nope")).status_code == 404
            assert (await http.post("/readyz")).status_code == 405
    finally:
        await probes.close()
