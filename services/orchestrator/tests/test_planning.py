"""Chunks partition the slice plan: every slice once, in order, in near-equal chunks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tally_inference import SliceParams, plan_slices
from tally_orchestrator._planning import plan_chunks


@settings(max_examples=60, deadline=None)
@given(
    width=st.integers(64, 6000),
    height=st.integers(64, 6000),
    slice_size=st.sampled_from([256, 512, 640]),
    overlap=st.sampled_from([0.0, 0.2, 0.25]),
    chunk_slices=st.integers(1, 40),
)
def test_chunks_partition_the_slice_plan(
    width: int, height: int, slice_size: int, overlap: float, chunk_slices: int
) -> None:
    params = SliceParams(slice_size, overlap)
    chunks = plan_chunks(width, height, params, chunk_slices)
    assert [box for chunk in chunks for box in chunk] == plan_slices(width, height, params)
    sizes = [len(c) for c in chunks]
    assert all(0 < size <= chunk_slices for size in sizes)
    assert max(sizes) - min(sizes) <= 1


def test_a_4000x3000_photo_in_chunks_of_16() -> None:
    chunks = plan_chunks(4000, 3000, SliceParams(512, 0.25), 16)
    assert [len(c) for c in chunks] == [15, 15, 15, 15, 14, 14]


def test_chunk_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        plan_chunks(1000, 1000, SliceParams(), 0)
