"""The bus messages survive the wire unchanged, and unknown bytes are refused."""

from __future__ import annotations

import pytest
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from tally_contracts.v1 import (
    ChunkFailure,
    ChunkResult,
    DetectChunk,
    JobEvent,
    JobRef,
    SliceBox,
)

JOB = JobRef(tenant_id="t1", session_id="s1", job_id="j1")


def test_a_detect_chunk_round_trips() -> None:
    chunk = DetectChunk(
        job=JOB,
        chunk_index=2,
        chunk_count=11,
        attempt=1,
        object_key="t1/s1/j1/original.jpg",
        width=4000,
        height=3000,
        slices=[SliceBox(x1=0, y1=0, x2=512, y2=512), SliceBox(x1=384, y1=0, x2=896, y2=512)],
        slice_size=512,
        confidence=0.35,
        total_slices=88,
    )
    assert DetectChunk.FromString(chunk.SerializeToString()) == chunk


def test_a_chunk_result_carries_either_detections_or_a_failure() -> None:
    failed = ChunkResult(
        job=JOB, chunk_index=0, failure=ChunkFailure(code="inference_failed", message="boom")
    )
    decoded = ChunkResult.FromString(failed.SerializeToString())
    assert decoded.WhichOneof("outcome") == "failure"
    assert decoded.failure.code == "inference_failed"


def test_a_job_event_keeps_its_kind_sequence_and_counts() -> None:
    stamp = Timestamp()
    stamp.FromSeconds(1_790_000_000)
    event = JobEvent(
        event_id="e1",
        job=JOB,
        sequence=7,
        emitted_at=stamp,
        source="orchestrator",
        completed=JobEvent.Completed(counts={"seedling": 289, "weed": 3}, detections=292),
    )
    decoded = JobEvent.FromString(event.SerializeToString())
    assert decoded.WhichOneof("kind") == "completed"
    assert dict(decoded.completed.counts) == {"seedling": 289, "weed": 3}
    assert decoded.sequence == 7


def test_garbage_bytes_do_not_decode() -> None:
    with pytest.raises(DecodeError):
        JobEvent.FromString(b"\xff\xff\xff\xff not protobuf")
