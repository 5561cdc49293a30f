"""The Triton model configurations parse as Triton's own ModelConfig and agree with each other."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

TRITON = Path(__file__).resolve().parents[2] / "deploy" / "triton"


def _load(kind: str) -> mc.ModelConfig:
    config = mc.ModelConfig()
    text_format.Parse((TRITON / kind / "tally_detector" / "config.pbtxt").read_text(), config)
    return config


@pytest.fixture(scope="module")
def gpu() -> mc.ModelConfig:
    return _load("gpu")


@pytest.fixture(scope="module")
def cpu() -> mc.ModelConfig:
    return _load("cpu")


def test_gpu_config_serves_the_onnx_file_on_gpus_with_onnxruntime(gpu: mc.ModelConfig) -> None:
    assert gpu.name == "tally_detector"
    assert gpu.backend == "onnxruntime"
    assert (TRITON / "gpu" / "tally_detector" / "1" / "model.onnx").stat().st_size < 15_000_000
    assert [g.kind for g in gpu.instance_group] == [mc.ModelInstanceGroup.KIND_GPU]
    assert gpu.instance_group[0].count >= 1


def test_gpu_config_batches_dynamically_within_its_max_batch_size(gpu: mc.ModelConfig) -> None:
    assert gpu.max_batch_size >= 16
    assert gpu.HasField("dynamic_batching")
    preferred = list(gpu.dynamic_batching.preferred_batch_size)
    assert preferred
    assert preferred == sorted(preferred)
    assert all(0 < size <= gpu.max_batch_size for size in preferred)
    assert 0 < gpu.dynamic_batching.max_queue_delay_microseconds <= 10_000


def test_gpu_config_asks_for_tensorrt_in_fp16(gpu: mc.ModelConfig) -> None:
    accelerators = gpu.optimization.execution_accelerators.gpu_execution_accelerator
    assert [a.name for a in accelerators] == ["tensorrt"]
    assert accelerators[0].parameters["precision_mode"] == "FP16"


def test_gpu_warmup_uses_a_batch_the_model_accepts(gpu: mc.ModelConfig) -> None:
    for warmup in gpu.model_warmup:
        assert 0 < warmup.batch_size <= gpu.max_batch_size
        assert set(warmup.inputs) == {i.name for i in gpu.input}


def test_cpu_config_is_the_python_backend_on_cpu(cpu: mc.ModelConfig) -> None:
    assert cpu.backend == "python"
    assert [g.kind for g in cpu.instance_group] == [mc.ModelInstanceGroup.KIND_CPU]
    assert cpu.max_batch_size >= 8
    assert (TRITON / "cpu" / "tally_detector" / "1" / "model.onnx").resolve() == (
        TRITON / "gpu" / "tally_detector" / "1" / "model.onnx"
    ).resolve()


def test_both_configs_expose_the_same_tensors(cpu: mc.ModelConfig, gpu: mc.ModelConfig) -> None:
    assert cpu.name == gpu.name
    assert list(cpu.input) == list(gpu.input)
    assert list(cpu.output) == list(gpu.output)
    (image,) = gpu.input
    assert (image.name, image.data_type, list(image.dims)) == ("images", mc.TYPE_UINT8, [-1, -1, 3])
    (rows,) = gpu.output
    assert (rows.name, rows.data_type, list(rows.dims)) == ("detections", mc.TYPE_FP32, [-1, 6])
