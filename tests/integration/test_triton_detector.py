"""The whole path on a real Triton: generated photo → slices → Triton → merge → counts."""

from __future__ import annotations

import asyncio
import io
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tritonclient.grpc import InferenceServerClient as SyncClient

from tally_inference import (
    LABELS,
    ImageError,
    ImageEval,
    InferenceError,
    SharedMemoryMode,
    SlicedDetector,
    TritonModel,
    average_precision,
    count_error,
)
from tally_inference import _triton as triton_client
from tally_stack.launcher import free_port, pid_running
from tally_stack.local_triton import LocalTriton
from tally_synth import PhotoSpec, render

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def photo() -> tuple[bytes, list[tuple[tuple[int, int, int, int], str]]]:
    data, annotations = render(PhotoSpec(seed=424_242, index=0, width=4000, height=3000))
    return data, [(a.bbox, a.label) for a in annotations]


@pytest.mark.parametrize("shared_memory", ["off", "on"])
async def test_a_4000x3000_photo_is_counted_within_tolerance(
    triton: LocalTriton,
    photo: tuple[bytes, list[tuple[tuple[int, int, int, int], str]]],
    shared_memory: SharedMemoryMode,
) -> None:
    data, truth = photo
    async with TritonModel(triton.endpoints.grpc_url, shared_memory=shared_memory) as model:
        result = await SlicedDetector(model).detect_bytes(data)
        assert model.uses_shared_memory == (shared_memory == "on")

    assert (result.width, result.height, result.slices) == (4000, 3000, 88)
    true_seedlings = sum(1 for _, label in truth if label == "seedling")
    assert true_seedlings > 100
    assert count_error(result.counts["seedling"], true_seedlings) <= 0.08
    seedlings = [d for d in result.detections if d.label == "seedling"]
    ap = average_precision(
        [
            ImageEval(
                np.array([d.bbox for d in seedlings], np.float32),
                np.array([d.score for d in seedlings], np.float32),
                np.array([box for box, label in truth if label == "seedling"], np.float32),
            )
        ]
    )
    assert ap >= 0.9
    assert all(
        0 <= d.bbox[0] < d.bbox[2] <= 4000 and 0 <= d.bbox[1] < d.bbox[3] <= 3000
        for d in result.detections
    )
    assert set(result.counts) == set(LABELS)


async def test_concurrent_requests_get_their_own_answers(triton: LocalTriton) -> None:
    rng = np.random.default_rng(1)
    batches = [rng.integers(0, 256, (n, 256, 256, 3), dtype=np.uint8) for n in (1, 3, 2, 4)]
    async with TritonModel(triton.endpoints.grpc_url) as model:
        alone = [await model.infer(b) for b in batches]
        together = await asyncio.gather(*(model.infer(b) for b in batches))
    for a, b in zip(alone, together, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-4)


def _registered(url: str) -> list[str]:
    """The system shared-memory regions Triton has registered, by name."""
    client = SyncClient(url)
    try:
        return [r.name for r in client.get_system_shared_memory_status().regions.values()]
    finally:
        client.close()


async def test_batches_through_shared_memory_get_the_answers_of_grpc(triton: LocalTriton) -> None:
    url = triton.endpoints.grpc_url
    rng = np.random.default_rng(2)
    batches = [rng.integers(0, 256, (n, 256, 256, 3), dtype=np.uint8) for n in (1, 3, 2, 4, 2)]
    before = set(_registered(url))  # the module's Triton serves other tests' clients too
    async with TritonModel(url) as plain, TritonModel(url, shared_memory="auto") as shared:
        copied = [await plain.infer(b) for b in batches]
        together = await asyncio.gather(*(shared.infer(b) for b in batches))
        again = [await shared.infer(b) for b in batches]
        assert shared.uses_shared_memory
        # A region for each request that was in flight at once, reused afterwards.
        names = set(_registered(url)) - before
        assert 1 <= len(names) <= len(batches)
    for a, b, c in zip(copied, together, again, strict=True):
        np.testing.assert_allclose(b, a, atol=1e-4)
        np.testing.assert_allclose(c, a, atol=1e-4)
    # Closed: unregistered from Triton and gone from /dev/shm.
    assert not names & set(_registered(url))
    assert not [n for n in names if (Path("/dev/shm") / n).exists()]


async def test_a_triton_that_forgot_its_regions_gets_them_registered_again(
    triton: LocalTriton,
) -> None:
    url = triton.endpoints.grpc_url
    batch = np.random.default_rng(3).integers(0, 256, (2, 128, 128, 3), dtype=np.uint8)
    async with TritonModel(url, shared_memory="on") as model:
        first = await model.infer(batch)
        client = SyncClient(url)
        try:
            client.unregister_system_shared_memory()  # all of them, as a restart does
        finally:
            client.close()
        np.testing.assert_allclose(await model.infer(batch), first, atol=1e-4)
        assert model.uses_shared_memory


@pytest.fixture
def unmappable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regions under a key Triton cannot open, as when it runs where this /dev/shm is not."""
    monkeypatch.setattr(triton_client._Region, "key", property(lambda r: f"/{r.name}-elsewhere"))


@pytest.mark.usefixtures("unmappable")
async def test_auto_sends_batches_inside_grpc_when_triton_cannot_map_the_region(
    triton: LocalTriton,
) -> None:
    url = triton.endpoints.grpc_url
    batch = np.random.default_rng(4).integers(0, 256, (2, 128, 128, 3), dtype=np.uint8)
    async with TritonModel(url) as plain, TritonModel(url, shared_memory="auto") as model:
        np.testing.assert_allclose(await model.infer(batch), await plain.infer(batch), atol=1e-4)
        assert not model.uses_shared_memory
        assert not [n for n in _registered(url) if n.startswith("tally-")]


@pytest.mark.usefixtures("unmappable")
async def test_shared_memory_on_fails_clearly_when_triton_cannot_map_the_region(
    triton: LocalTriton,
) -> None:
    batch = np.zeros((1, 64, 64, 3), np.uint8)
    async with TritonModel(triton.endpoints.grpc_url, shared_memory="on") as model:
        with pytest.raises(InferenceError, match="TALLY_TRITON_SHARED_MEMORY is on"):
            await model.infer(batch)


async def test_a_slice_size_the_network_cannot_take_is_a_clear_error(triton: LocalTriton) -> None:
    async with TritonModel(triton.endpoints.grpc_url) as model:
        with pytest.raises(InferenceError, match="multiples of 32"):
            await model.infer(np.zeros((1, 100, 100, 3), np.uint8))
        # The server is unharmed: the next request works.
        assert (await model.infer(np.zeros((1, 64, 64, 3), np.uint8))).shape == (1, 64, 6)


def _bmp_header(width: int, height: int) -> bytes:
    """A 24-bit BMP that claims a size and carries no pixels."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + info


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty_file"),
        (_bmp_header(100_000, 100_000), "image_too_large"),
        (_bmp_header(20_000, 6_000), "image_too_large"),
        (b"\xff\xd8\xff\xe0 this is not really a jpeg", "corrupt_image"),
        (b"PK\x03\x04" + bytes(200), "unsupported_format"),
    ],
    ids=["zero-bytes", "huge-header", "over-100-mp-header", "corrupt-jpeg", "zip-named-jpg"],
)
async def test_bad_bytes_fail_clearly_without_reaching_triton(
    triton: LocalTriton, data: bytes, code: str
) -> None:
    async with TritonModel(triton.endpoints.grpc_url) as model:
        with pytest.raises(ImageError) as caught:
            await SlicedDetector(model).detect_bytes(data)
    assert caught.value.code == code


async def test_a_one_pixel_image_fails_clearly(triton: LocalTriton) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, format="JPEG")
    async with TritonModel(triton.endpoints.grpc_url) as model:
        with pytest.raises(ImageError, match="smaller than"):
            await SlicedDetector(model).detect_bytes(buffer.getvalue())


async def test_an_unreachable_triton_fails_fast_instead_of_hanging() -> None:
    async with TritonModel(f"127.0.0.1:{free_port()}", timeout_s=10) as model:
        assert not await model.ready()
        with pytest.raises(InferenceError):
            await model.infer(np.zeros((1, 64, 64, 3), np.uint8))


async def test_an_unreachable_triton_is_an_error_not_a_reason_to_give_up_shared_memory() -> None:
    """Triton away says nothing of whether it can map this host's memory: the chunk fails (and
    comes back), and the next request tries shared memory again."""
    async with TritonModel(f"127.0.0.1:{free_port()}", timeout_s=10, shared_memory="auto") as model:
        with pytest.raises(InferenceError):
            await model.infer(np.zeros((1, 64, 64, 3), np.uint8))
        assert model.uses_shared_memory


def test_triton_cli_starts_in_the_background_and_stops_cleanly(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "tally_stack.local_triton"]
    state = ["--state-dir", str(tmp_path)]
    subprocess.run([*cli, "up", *state], check=True, timeout=240)
    info = json.loads((tmp_path / "state.json").read_text())
    try:
        assert subprocess.run([*cli, "status", *state], timeout=30).returncode == 0

        async def probe() -> bool:
            async with TritonModel(info["grpc_url"]) as model:
                return await model.ready()

        assert asyncio.run(probe())
    finally:
        subprocess.run([*cli, "down", *state], check=True, timeout=60)
    assert not (tmp_path / "state.json").exists()
    assert not pid_running(info["pid"])
    assert subprocess.run([*cli, "status", *state], timeout=30).returncode == 1
