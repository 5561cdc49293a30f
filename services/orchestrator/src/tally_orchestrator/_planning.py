"""A photo's slice plan, cut into chunks for the detectors."""

from __future__ import annotations

from tally_inference import Box, SliceParams, plan_slices


def plan_chunks(width: int, height: int, params: SliceParams, chunk_slices: int) -> list[list[Box]]:
    """SAHI's slices of the photo in order, in chunks of at most `chunk_slices`, sized evenly
    (88 slices in chunks of 16 give 6 chunks of 14–15, not five of 16 and one of 8)."""
    if chunk_slices < 1:
        raise ValueError("chunk_slices must be at least 1")
    slices = plan_slices(width, height, params)
    count = -(-len(slices) // chunk_slices)
    base, extra = divmod(len(slices), count)
    chunks, start = [], 0
    for index in range(count):
        size = base + (1 if index < extra else 0)
        chunks.append(slices[start : start + size])
        start += size
    return chunks
