"""The webhook receiver of docs/integrators.md, run as it is written: a signed webhook is taken
once (its result fetched after the answer), a retry of it is answered and not redone, a forged
one is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import types
from pathlib import Path
from typing import Any

import httpx
import pytest

from tally_client import AsyncTally

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "integrators.md"
SECRET = "whsec_" + base64.b64encode(b"the receiver's secret, 32 bytes.").decode()
RESULT = {
    "job_id": "j1",
    "width": 1600,
    "height": 1200,
    "counts": {"seedling": 2},
    "detections": [
        {"bbox": [1, 2, 30, 40], "score": 0.9, "label": "seedling"},
        {"bbox": [50, 60, 90, 99], "score": 0.8, "label": "seedling"},
    ],
}


def _receiver(monkeypatch: pytest.MonkeyPatch, fetched: list[str]) -> Any:
    """The guide's receiver.py as a module, its Tally client answered here."""
    source = next(
        block
        for block in re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.DOTALL)
        if block.startswith("# receiver.py")
    )
    monkeypatch.setenv("TALLY_WEBHOOK_SECRET", SECRET)

    def tally_api(request: httpx.Request) -> httpx.Response:
        fetched.append(request.url.path)
        return httpx.Response(200, json=RESULT)

    module = types.ModuleType("receiver")
    exec(compile(source, str(GUIDE), "exec"), module.__dict__)
    transport = httpx.MockTransport(tally_api)
    module.__dict__["AsyncTally"] = lambda: AsyncTally(
        "http://tally", "tly_test", transport=transport
    )
    return module


def _signed(body: bytes, msg_id: str, timestamp: int) -> dict[str, str]:
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
        "content-type": "application/json",
    }


async def test_the_guides_receiver_takes_each_webhook_once_and_refuses_forgeries(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fetched: list[str] = []
    receiver = _receiver(monkeypatch, fetched)
    event = {
        "type": "job.completed",
        "timestamp": "2026-12-01T10:00:05+00:00",
        "data": {"job_id": "j1", "session_id": "s1", "filename": "tray.jpg",
                 "status": "completed", "counts": {"seedling": 2}, "detections": 2},
    }  # fmt: skip
    body = json.dumps(event, separators=(",", ":")).encode()
    now = int(time.time())
    transport = httpx.ASGITransport(app=receiver.app)
    async with (
        receiver.app.router.lifespan_context(receiver.app),
        httpx.AsyncClient(transport=transport, base_url="http://receiver") as client,
    ):
        first = await client.post("/tally", content=body, headers=_signed(body, "msg_1", now))
        retry = await client.post("/tally", content=body, headers=_signed(body, "msg_1", now + 5))
        forged = await client.post(
            "/tally", content=body.replace(b"2", b"3"), headers=_signed(body, "msg_2", now)
        )
        stale = await client.post(
            "/tally", content=body, headers=_signed(body, "msg_3", now - 3600)
        )
    assert (first.status_code, retry.status_code) == (204, 204)
    assert fetched == ["/v1/jobs/j1/result"]  # once, for the first delivery only
    assert "tray.jpg (1600x1200): {'seedling': 2}, 2 boxes" in capsys.readouterr().out
    assert forged.status_code == 400
    assert "no signature matches" in forged.text
    assert stale.status_code == 400
    assert "too old" in stale.text
