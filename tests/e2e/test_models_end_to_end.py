"""Bring your own detector, on the real local stack: YOLOv8- and YOLOv5-layout exports of the
shipped model (tally_model.layouts) are uploaded, validated by `tally-models` on the running
Triton, and used by sessions; they count what the native model counts on the same generated
photos. Triton killed and restarted in the middle of a session on a custom model: the model is
loaded again by reconciliation and the session completes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tally_client.sdk import TallyClient
from tally_model.layouts import wrapped_bytes
from tally_stack.local_triton import Endpoints, LocalTriton, stub_pids
from tally_synth import write_dataset
from tests.e2e.harness import Stack, Worker, final_state, local_stack
from tests.eventually import eventually

pytestmark = pytest.mark.e2e
LABELS = ["seedling", "weed"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    directory = tmp_path_factory.mktemp("photos")
    write_dataset(directory, count=3, seed=4_242, width=2000, height=1500, workers=2)
    return sorted(directory.glob("*.jpg"))


@pytest.fixture(scope="module")
def stack(module_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The stack with its Triton run by this module (on the stack's ports, so that it can be
    killed) and one detector started once that Triton is up."""
    run_dir = tmp_path_factory.mktemp("models") / "stack"
    with local_stack(
        module_database,
        run_dir,
        TALLY_STACK_DETECTORS="0",
        TALLY_STACK_EXTERNAL="triton",
        TALLY_MODEL_POLL_S="0.5",
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def triton(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTriton]:
    config = stack.config
    server = LocalTriton(
        runtime_dir=tmp_path_factory.mktemp("triton"),
        endpoints=Endpoints(
            config.triton_http_port, config.triton_grpc_port, config.triton_metrics_port
        ),
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def detector(stack: Stack, triton: LocalTriton) -> Iterator[Worker]:
    worker = stack.start("detector", "ready (Triton at")
    assert worker.wait_ready(120), worker.lines[-20:]
    try:
        yield worker
    finally:
        worker.process.stop()


@pytest.fixture(scope="module")
def client(stack: Stack, detector: Worker) -> Iterator[TallyClient]:
    with TallyClient(stack.url, stack.admin_key("byo")) as tally:
        yield tally


def _added(client: TallyClient, tmp_path: Path, model_format: str) -> dict[str, Any]:
    """A model of `model_format` uploaded, once `tally-models` has it ready on Triton."""
    path = tmp_path / f"{model_format}.onnx"
    path.write_bytes(wrapped_bytes(model_format))  # type: ignore[arg-type]
    model = client.upload_model(path, f"plugs-{model_format}", model_format, LABELS)
    assert model["status"] == "validating"
    ready = eventually(
        lambda: client.model(model["model_id"]),
        120,
        every_s=0.5,
        until=lambda m: m["status"] != "validating",
        what=f"{model_format} model validated",
    )
    assert (ready["status"], ready["error"]) == ("ready", None)
    return ready


def _counts(
    client: TallyClient, photos: list[Path], model: str | None
) -> dict[str, dict[str, int]]:
    """Each photo's counts per label from a session on `model` (None: the default)."""
    session = client.create_session("byo", {"model": model} if model else None)
    client.upload(session, photos)
    state = final_state(client, session, 300)
    assert {j["status"] for j in state["jobs"]} == {"completed"}, state["jobs"]
    counts = {}
    for job in state["jobs"]:
        result = client.result(job["job_id"])
        expected = model or "seedlings:1"
        assert f"{result['model']['name']}:{result['model']['version']}" == expected
        assert result["model"]["labels"] == LABELS
        counts[job["filename"]] = result["counts"]
    return counts


def test_yolo_layout_models_count_what_the_native_model_counts(
    client: TallyClient, photos: list[Path], tmp_path: Path
) -> None:
    v8 = _added(client, tmp_path, "yolov8")
    v5 = _added(client, tmp_path, "yolov5")
    listed = [(m["name"], m["status"]) for m in client.list_models()]
    assert listed[0] == ("seedlings", "ready")
    assert set(listed[1:]) == {("plugs-yolov8", "ready"), ("plugs-yolov5", "ready")}

    native = _counts(client, photos, None)
    assert sum(c["seedling"] for c in native.values()) > 50  # trays hold seedlings
    for model in (v8, v5):
        counted = _counts(client, photos, f"{model['name']}:{model['version']}")
        assert counted.keys() == native.keys()
        for name, counts in counted.items():
            for label in LABELS:
                expected = native[name][label]
                assert abs(counts[label] - expected) <= max(1, 0.01 * expected), (
                    model["name"],
                    name,
                    counts,
                    native[name],
                )


def test_a_session_on_a_custom_model_completes_through_a_triton_restart(
    client: TallyClient, photos: list[Path], tmp_path: Path, triton: LocalTriton
) -> None:
    model = _added(client, tmp_path, "yolov8")
    reference = f"{model['name']}:{model['version']}"
    session = client.create_session("through a Triton restart", {"model": reference})
    client.upload(session, photos)
    eventually(
        lambda: client.jobs(session),
        120,
        every_s=0.2,
        until=lambda state: any(j["processed"] for j in state["jobs"]),
        what="the session under way",
    )
    assert triton.process is not None
    stubs = stub_pids(triton.runtime_dir / "backends")
    assert stubs  # the custom model's (and the built-in one's) Python-backend stubs
    triton.crash()  # SIGKILL, stubs too: Triton forgets the models loaded through its API
    assert not set(stubs) & set(stub_pids(triton.runtime_dir / "backends"))
    triton.start()  # the same ports, its built-in model only; tally-models reconciles
    state = final_state(client, session, 300)
    assert {j["status"] for j in state["jobs"]} == {"completed"}, state["jobs"]
    for job in state["jobs"]:
        assert client.result(job["job_id"])["counts"]["seedling"] > 0
