"""A job's result from its chunks' detections, without servers: merged across overlapping
slices, counted, and the document stored next to the photo."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from tally_contracts.v1 import ChunkDetections, Detection, SliceBox, SliceDetections
from tally_db import Job
from tally_orchestrator._results import job_result, merge_chunks, slice_results

SIZE = 896  # a photo of four 512 px slices overlapping by 128 px


def _chunk(*slices: tuple[tuple[int, int, int, int], list[Detection]]) -> bytes:
    return ChunkDetections(
        slices=[
            SliceDetections(slice=SliceBox(x1=x1, y1=y1, x2=x2, y2=y2), detections=found)
            for (x1, y1, x2, y2), found in slices
        ]
    ).SerializeToString()


def _seen(x1: float, y1: float, x2: float, y2: float, score: float, label: str) -> Detection:
    return Detection(x1=x1, y1=y1, x2=x2, y2=y2, score=score, label=label)


# A seedling in the overlap of the two top slices (seen by both), a weed in the bottom-left one.
PAYLOADS = [
    _chunk(
        ((0, 0, 512, 512), [_seen(400, 100, 480, 180, 0.875, "seedling")]),
        ((384, 0, 896, 512), [_seen(401, 101, 480, 180, 0.75, "seedling")]),
    ),
    _chunk(
        ((0, 384, 512, 896), [_seen(100, 600, 160, 660, 0.625, "weed")]),
        ((384, 384, 896, 896), []),
    ),
]


def _job() -> Job:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    return Job(
        id=uuid.UUID(int=7),
        tenant_id=uuid.UUID(int=1),
        session_id=uuid.UUID(int=2),
        image_id=uuid.UUID(int=3),
        filename="tray.jpg",
        object_key="t/s/j/original.jpg",
        width=SIZE,
        height=SIZE,
        status="processing",
        phase="detecting",
        processed=4,
        total=4,
        chunk_count=2,
        error_code=None,
        error_message=None,
        warnings=[],
        created_at=now,
        started_at=now,
        completed_at=None,
        updated_at=now,
    )


def test_every_slice_of_every_chunk_is_read_in_order() -> None:
    parts = slice_results(PAYLOADS)
    assert [p.slice_box for p in parts] == [
        (0, 0, 512, 512),
        (384, 0, 896, 512),
        (0, 384, 512, 896),
        (384, 384, 896, 896),
    ]
    assert [len(p.boxes) for p in parts] == [1, 1, 1, 0]
    assert parts[2].boxes.tolist() == [[100, 600, 160, 660]]
    assert parts[2].classes.tolist() == [1]  # LABELS: seedling, weed


def test_an_object_seen_by_two_slices_is_counted_once() -> None:
    merged = merge_chunks(PAYLOADS, SIZE, SIZE)
    assert merged.counts == {"seedling": 1, "weed": 1}
    assert merged.slices == 4
    assert [(d.label, d.score) for d in merged.detections] == [("seedling", 0.875), ("weed", 0.625)]


def test_the_result_document_lies_next_to_the_photo_with_its_counts() -> None:
    job = _job()
    result = job_result(job, merge_chunks(PAYLOADS, SIZE, SIZE))
    assert result.key == "t/s/j/result.json"
    assert (result.counts, result.detections, result.warnings) == (
        {"seedling": 1, "weed": 1},
        2,
        [],
    )
    document = result.document.model_dump()
    assert (document["job_id"], document["width"], document["height"]) == (str(job.id), SIZE, SIZE)
    assert document["counts"] == result.counts
    assert [d["label"] for d in document["detections"]] == ["seedling", "weed"]
    assert document["detections"][1] == {
        "bbox": [100, 600, 160, 660],
        "score": 0.625,
        "label": "weed",
    }


def test_a_photo_with_nothing_found_completes_with_zero_counts_and_a_warning() -> None:
    empty = [_chunk(((0, 0, 512, 512), []), ((384, 0, 896, 512), []))]
    result = job_result(_job(), merge_chunks(empty, SIZE, SIZE))
    assert (result.counts, result.detections) == ({"seedling": 0, "weed": 0}, 0)
    assert result.warnings == ["no_detections"]
    assert result.document.detections == []
