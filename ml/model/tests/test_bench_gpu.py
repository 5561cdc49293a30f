"""`tally-bench-gpu` where there is no GPU (here, and in CI): it skips cleanly, and its code
paths run on the CPU provider with figures labelled as such."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tally_model import bench_gpu


def test_without_a_gpu_it_says_why_and_exits_0(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("shutil.which", lambda _name: None)
    assert bench_gpu.main([]) == 0
    assert capsys.readouterr().out == (
        "bench-gpu skipped: no nvidia-smi on PATH: no NVIDIA driver on this machine\n"
    )


def test_its_measurement_runs_raw_and_through_the_client_on_the_cpu_provider(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "figures.json"
    args = ["--provider", "cpu", "--size", "1024x768", "--rounds", "1", "--json", str(out)]
    assert bench_gpu.main(args) == 0
    (figure,) = json.loads(out.read_text())
    assert figure["provider"] == "cpu"
    assert figure["rounds"] == 1
    assert figure["raw_slices_per_s"] > 0
    assert figure["client_slices_per_s"] > 0
    assert "cpu (not a GPU)" in capsys.readouterr().out
