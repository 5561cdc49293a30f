"""A photo's slice plan, cut into chunks for the detectors."""

from __future__ import annotations

from tally_inference import Box, SliceParams, plan_slices


def plan_chunks(
    width: int, height: int, params: SliceParams, chunk_slices: int, batch: int = 1
) -> list[list[Box]]:
    """SAHI's slices of the photo in order, in chunks of at most `chunk_slices`, as even as
    whole batches of `batch` slices allow (a detector sends a chunk to Triton `batch` slices at a
    time; a part-full batch costs about as much as a full one). 88 slices in chunks of 16 with
    batches of 8: five chunks of 16 and one of 8, every batch full; with batches of 1: six of
    14–15. Only the last chunk may hold a part-full batch (the photo's last slices)."""
    if chunk_slices < 1 or batch < 1:
        raise ValueError("chunk_slices and batch must be at least 1")
    unit = batch if chunk_slices % batch == 0 else 1  # chunks are whole batches when they can be
    slices = plan_slices(width, height, params)
    units = -(-len(slices) // unit)
    count = -(-units // (chunk_slices // unit))
    base, extra = divmod(units, count)
    sizes = [(base + (1 if index < extra else 0)) * unit for index in range(count)]
    sizes[-1] -= units * unit - len(slices)  # the last batch is part-full: the rest of the photo
    chunks, start = [], 0
    for size in sizes:
        chunks.append(slices[start : start + size])
        start += size
    return chunks
