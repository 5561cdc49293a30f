"""The shipped model counts within target under every camera and light condition the generator
draws: far and near cameras, a turned tray, dim and warm light, soft focus, heavy JPEG.

A held-out set of its own (seed and photos used nowhere else), three 4000×3000 photos per
condition, through the production path (decode → slices → Triton → merge) as `tally-eval` runs it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tally_inference import DetectParams, SliceParams
from tally_model.evaluate import (
    TARGET_MEDIAN_COUNT_ERROR,
    TARGET_WORST_COUNT_ERROR,
    Figures,
    ensure_dataset,
    evaluate_condition,
)
from tally_stack.local_triton import LocalTriton
from tally_synth import HELD_OUT

pytestmark = pytest.mark.integration

SEED = 20_261_202
PHOTOS = 3


def test_counts_hold_under_every_condition(triton: LocalTriton, tmp_path: Path) -> None:
    results: list[Figures] = []
    for condition in HELD_OUT:
        directory = tmp_path / condition
        ensure_dataset(directory, PHOTOS, SEED, 4000, 3000, condition)
        results.append(
            asyncio.run(
                evaluate_condition(
                    condition, directory, triton.endpoints.grpc_url, SliceParams(), DetectParams()
                )
            )
        )
    table = "\n".join(
        f"{f.condition:9} median {100 * f.median:.2f} % worst {100 * f.worst:.2f} % "
        f"AP {f.aps['seedling']:.3f} ({sum(s.true for s in f.scores)} seedlings)"
        for f in results
    )
    for figures in results:
        assert figures.median <= TARGET_MEDIAN_COUNT_ERROR, table
        assert figures.worst <= TARGET_WORST_COUNT_ERROR, table
        assert figures.aps["seedling"] >= 0.9, table
    assert {f.condition: f.overlap for f in results}["near"] == 0.4  # holds 180 px plants
