"""The upload service as its own process, under photos that are small to send and huge to decode:
its memory stays within what its decode budget allows, and every request gets an answer."""

from __future__ import annotations

import asyncio
import io
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import httpx
import numpy as np
import pytest
from PIL import Image

from tally_bus import Topology
from tally_db import Store
from tally_stack import free_port
from tally_stack.local_s3 import MOTO_ACCESS_KEY, MOTO_SECRET_KEY

pytestmark = [pytest.mark.integration, pytest.mark.reliability]
BIN = Path(sys.executable).parent
MIB = 1024 * 1024
SIDE = 9999  # 99.98 MP: under the 100 MP pixel limit, so accepted, yet over 2/3 of the budget
BUDGET = 150_000_000  # the default decode budget, set explicitly: the bound below derives from it
# A decode that holds n pixels of the budget keeps n pixels at Pillow's width for the photo's mode:
# 1 byte for grey (these photos), up to 4 for colour (RGB is stored as RGBX). Counting a second
# full-size copy (a conversion, or an allocator that has not yet given back the last decode's
# memory), grey photos take at most 2 bytes per pixel of the budget.
BYTES_PER_BUDGET_PIXEL = 1 * 2
# What is not decoded pixels: the request bodies (8 × 97 KB), thumbnails, allocator slack.
SLACK = 64 * MIB


def _grey_png(side: int) -> bytes:
    """A side×side grey PNG of a few stripes: ~97 KB that decode to side² bytes of grey."""
    pixels = np.zeros((side, side), dtype=np.uint8)
    pixels[:, ::1000] = 255
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _memory(pid: int) -> dict[str, int]:
    """The process's VmRSS (now) and VmHWM (its peak so far), in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) * 1024
    return fields


@dataclass
class Upload:
    process: asyncio.subprocess.Process
    url: str
    key: str


@pytest.fixture
async def upload(database: str, s3_endpoint: str, amqp_url: str) -> AsyncIterator[Upload]:
    topology = Topology(prefix=f"test-{uuid.uuid4().hex[:10]}")
    port = free_port()
    env = {
        "TALLY_DATABASE_URL": database,
        "TALLY_AMQP_URL": amqp_url,
        "TALLY_BUS_PREFIX": topology.prefix,
        "TALLY_S3_ENDPOINT_URL": s3_endpoint,
        "TALLY_S3_BUCKET": f"mem-{uuid.uuid4().hex[:10]}",
        "TALLY_S3_ACCESS_KEY_ID": MOTO_ACCESS_KEY,
        "TALLY_S3_SECRET_ACCESS_KEY": MOTO_SECRET_KEY,
        "TALLY_PORT": str(port),
        "TALLY_DECODE_PIXEL_BUDGET": str(BUDGET),
    }
    async with Store.open(database) as store:  # migrated before the service starts
        key = (await store.create_api_key((await store.create_tenant("t")).id)).key
    process = await asyncio.create_subprocess_exec(
        str(BIN / "tally-upload"), env={**os.environ, **env}, stderr=asyncio.subprocess.PIPE
    )
    assert process.stderr is not None
    drain: asyncio.Task[bytes] | None = None
    try:
        async with asyncio.timeout(60):
            while line := await process.stderr.readline():
                sys.stderr.write(line.decode(errors="replace"))
                if b"Application startup complete" in line:
                    break
            else:
                raise AssertionError("tally-upload exited before it was ready")
        # Later lines are read and dropped (a full pipe would block the service).
        drain = asyncio.create_task(process.stderr.read())
        yield Upload(process, f"http://127.0.0.1:{port}", key)
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()
        if drain is not None:
            sys.stderr.write((await drain).decode(errors="replace")[-4000:])
        async with await aio_pika.connect(amqp_url) as connection:
            await topology.delete(await connection.channel())


async def test_eight_parallel_100_mp_photos_stay_within_the_decode_budget(
    upload: Upload,
) -> None:
    # Made in a thread: encoding 100 MP takes about a second, which the event loop must not wait.
    photo = await asyncio.to_thread(_grey_png, SIDE)
    assert len(photo) < 200_000
    auth = {"Authorization": f"Bearer {upload.key}"}
    pid = upload.process.pid
    async with httpx.AsyncClient(base_url=upload.url, headers=auth, timeout=120) as http:
        created = await http.post("/v1/sessions", json={})
        assert created.status_code == 201, created.text
        sid = created.json()["session_id"]
        # A first small photo loads what intake needs (codecs, S3 and database connections): the
        # base is the service at work, not the service idle.
        small = io.BytesIO()
        Image.new("L", (640, 480)).save(small, format="PNG")
        warm = await http.post(
            f"/v1/sessions/{sid}/photos", files=[("file", ("small.png", small.getvalue()))]
        )
        assert warm.status_code == 202, warm.text
        base = _memory(pid)["VmRSS"]

        samples: list[int] = []
        done = asyncio.Event()

        async def sample() -> None:
            while not done.is_set():
                samples.append(_memory(pid)["VmRSS"])
                await asyncio.sleep(0.02)

        async def send(n: int) -> httpx.Response:
            return await http.post(
                f"/v1/sessions/{sid}/photos", files=[("file", (f"bomb-{n}.png", photo))]
            )

        sampler = asyncio.create_task(sample())
        answers = await asyncio.gather(*(send(n) for n in range(8)))
        done.set()
        await sampler
        after = _memory(pid)

    peak = max(after["VmHWM"], *samples)
    statuses = sorted(a.status_code for a in answers)
    codes = sorted(r["code"] for a in answers for r in a.json().get("rejected", []))
    print(
        f"\nupload RSS: base {base / MIB:.0f} MiB, peak {peak / MIB:.0f} MiB "
        f"(+{(peak - base) / MIB:.0f}), after {after['VmRSS'] / MIB:.0f} MiB; "
        f"answers {statuses}, refusals {codes}"
    )
    # Every request answered, none lost: accepted, limited, or busy (to be sent again).
    assert len(answers) == 8
    assert set(statuses) <= {202, 429, 503}, [a.text for a in answers]
    assert statuses.count(202) >= 1
    for answer in answers:
        if answer.status_code == 503:
            assert answer.json()["error"]["code"] == "busy"
            assert int(answer.headers["Retry-After"]) > 0
    # The budget lets one 100 MP photo decode at a time (two would be 200 MP, over 150 MP): the
    # peak is about one grey decode over the base (8 at once were +480 MiB with the same code).
    bound = base + BUDGET * BYTES_PER_BUDGET_PIXEL + SLACK
    assert peak < bound, f"peak {peak / MIB:.0f} MiB over {bound / MIB:.0f} MiB"
    # And what the decodes took is given back: less than half a decoded photo stays (glibc kept
    # about one whole, +96 MiB, before intake trimmed the heap after large decodes).
    assert after["VmRSS"] < base + SIDE * SIDE // 2
