"""Chunks partition the slice plan: every slice once, in order, in near-equal chunks of whole
batches."""

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
    batch=st.sampled_from([1, 4, 8]),
)
def test_chunks_partition_the_slice_plan_in_whole_batches(
    width: int, height: int, slice_size: int, overlap: float, chunk_slices: int, batch: int
) -> None:
    params = SliceParams(slice_size, overlap)
    chunks = plan_chunks(width, height, params, chunk_slices, batch)
    assert [box for chunk in chunks for box in chunk] == plan_slices(width, height, params)
    sizes = [len(c) for c in chunks]
    assert all(0 < size <= chunk_slices for size in sizes)
    unit = batch if chunk_slices % batch == 0 else 1
    assert all(size % unit == 0 for size in sizes[:-1])  # only the last batch may be part-full
    assert max(sizes[:-1], default=sizes[-1]) - min(sizes[:-1], default=sizes[-1]) <= unit


def test_a_4000x3000_photo_in_chunks_of_16() -> None:
    params = SliceParams(512, 0.25)
    assert [len(c) for c in plan_chunks(4000, 3000, params, 16, 8)] == [16, 16, 16, 16, 16, 8]
    assert [len(c) for c in plan_chunks(4000, 3000, params, 16)] == [15, 15, 15, 15, 14, 14]


def test_chunk_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        plan_chunks(1000, 1000, SliceParams(), 0)
    with pytest.raises(ValueError, match="at least 1"):
        plan_chunks(1000, 1000, SliceParams(), 16, 0)
