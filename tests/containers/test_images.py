"""What `make images` builds, each image on its own (run with testcontainers): it runs as a
user other than root, it holds no compiler, it says how to check its health and what it is;
and the Triton image alone serves the model this repository ships."""

from __future__ import annotations

import asyncio

import pytest
import tritonclient.grpc.aio as grpcclient
from testcontainers.core.config import testcontainers_config
from testcontainers.core.container import DockerContainer

from tally_inference import SlicedDetector, TritonModel, count_error
from tally_stack import free_port
from tally_synth import PhotoSpec, render
from tests.containers.harness import IMAGES, VERSION, engine
from tests.eventually import eventually_async

pytestmark = pytest.mark.containers
# Ryuk, testcontainers' reaper, is an image from a registry; every container here is stopped by
# its `with` block instead.
testcontainers_config.ryuk_disabled = True

# A compiler (or its driver) in any of the usual places; the output should be empty.
NO_COMPILER = (
    "for tool in gcc cc c++ g++ clang tcc x86_64-linux-gnu-gcc; do command -v $tool; done; "
    "ls /usr/lib/gcc/*/*/cc1 2>/dev/null; true"
)


@pytest.mark.parametrize("image", IMAGES)
def test_an_image_runs_as_non_root_without_a_compiler_and_says_what_it_is(image: str) -> None:
    config = engine().images.get(image).attrs["Config"]
    user = str(config.get("User") or "")
    uid = user.split(":")[0]
    assert uid.isdigit(), f"{image}: USER {user!r} (numeric, so that runAsNonRoot can check it)"
    assert int(uid) != 0, image
    assert config.get("Healthcheck", {}).get("Test"), f"{image} has no HEALTHCHECK"
    assert config["Labels"].get("org.opencontainers.image.title"), image

    with DockerContainer(image).with_kwargs(entrypoint=["sleep", "120"]) as container:
        assert _run(container, "id", "-u") == (0, uid)
        assert _run(container, "sh", "-c", NO_COMPILER) == (0, ""), f"{image} has a compiler"


def _run(container: DockerContainer, *command: str) -> tuple[int, str]:
    code, output = container.exec(list(command))
    assert code is not None
    assert isinstance(output, bytes)
    return code, output.decode().strip()


def test_the_triton_image_alone_serves_the_shipped_model() -> None:
    engine()
    port = free_port()
    triton = DockerContainer(f"tally/triton-cpu:{VERSION}").with_kwargs(shm_size="256m")
    # Published on loopback only; with_bind_ports takes no host address, the engine API does.
    triton.ports["8001/tcp"] = ("127.0.0.1", port)  # type: ignore[assignment]
    data, truth = render(PhotoSpec(seed=515, index=0, width=4000, height=3000))
    with triton:
        slices, counts = asyncio.run(_detect_once_ready(f"127.0.0.1:{port}", data, 120))
    true_seedlings = sum(1 for a in truth if a.label == "seedling")
    assert slices == 88
    assert count_error(counts["seedling"], true_seedlings) <= 0.08


async def _detect_once_ready(
    url: str, photo: bytes, timeout_s: float
) -> tuple[int, dict[str, int]]:
    async with grpcclient.InferenceServerClient(url) as probe:
        await eventually_async(
            lambda: _model_ready(probe), timeout_s, every_s=0.5, what="Triton serves the model"
        )
    async with TritonModel(url) as model:
        result = await SlicedDetector(model).detect_bytes(photo)
    return result.slices, dict(result.counts)


async def _model_ready(probe: grpcclient.InferenceServerClient) -> bool:
    try:
        return bool(await probe.is_model_ready("tally_detector"))
    except Exception:  # starting: the port does not answer yet
        return False
