"""A job's result from its chunks' detections: merged across slices, counted, and the document
stored next to the photo. Pure functions (merging is blocking: run it in a thread)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tally_contracts.v1 import ChunkDetections
from tally_db import Job
from tally_inference import (
    LABELS,
    DetectionResult,
    DetectParams,
    SliceResult,
    merge_detections,
)
from tally_storage import JobResult, ResultModel, StoredDetection, keys


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a completed job records."""

    key: str  # where the document goes, next to the original
    document: JobResult  # result.json
    counts: dict[str, int]
    detections: int
    warnings: list[str]


def slice_results(payloads: Sequence[bytes], labels: Sequence[str] = LABELS) -> list[SliceResult]:
    """The detections of every slice of the chunks (ChunkDetections payloads), in order; their
    classes are positions in the model's `labels`."""
    index = {label: i for i, label in enumerate(labels)}
    parts = []
    for payload in payloads:
        for found in ChunkDetections.FromString(payload).slices:
            box = (found.slice.x1, found.slice.y1, found.slice.x2, found.slice.y2)
            detections = list(found.detections)
            parts.append(
                SliceResult(
                    box,
                    np.array([[d.x1, d.y1, d.x2, d.y2] for d in detections], np.float32).reshape(
                        -1, 4
                    ),
                    np.array([d.score for d in detections], np.float32),
                    np.array([index[d.label] for d in detections], np.int64),
                )
            )
    return parts


def merge_chunks(
    payloads: Sequence[bytes], width: int, height: int, labels: Sequence[str] = LABELS
) -> DetectionResult:
    """One photo's detections from all its chunks: neighbouring slices' duplicates merged (SAHI's
    postprocess), counted per label of the model. Blocking."""
    return merge_detections(slice_results(payloads, labels), width, height, DetectParams(), labels)


def job_result(job: Job, merged: DetectionResult, model: ResultModel | None = None) -> Outcome:
    """What a completed job records: its counts, its result document (under the photo's prefix)
    and its warnings (`no_detections` when nothing was found)."""
    document = JobResult(
        job_id=str(job.id),
        width=job.width,
        height=job.height,
        counts=merged.counts,
        detections=[StoredDetection.model_validate(d.to_json()) for d in merged.detections],
        model=model,
    )
    warnings = [] if merged.detections else ["no_detections"]
    return Outcome(
        keys.result(job.object_key), document, merged.counts, len(merged.detections), warnings
    )
