"""A job's objects: where each lives, and what result.json holds. No S3 needed."""

from __future__ import annotations

import json
import uuid

import pytest
from pydantic import ValidationError

from tally_storage import JobResult, StoredDetection, keys


def test_a_jobs_objects_share_its_folder() -> None:
    tenant, session, job = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    original = keys.original(tenant, session, job, ".png")
    assert original == f"{tenant}/{session}/{job}/original.png"
    assert keys.job_folder(tenant, session, job) == f"{tenant}/{session}/{job}"
    assert keys.thumbnail(original) == f"{tenant}/{session}/{job}/thumbnail.jpg"
    assert keys.result(original) == f"{tenant}/{session}/{job}/result.json"
    assert keys.job_objects(original) == (
        original,
        keys.thumbnail(original),
        keys.result(original),
    )


def test_the_others_are_found_beside_any_original() -> None:
    assert keys.thumbnail("k/done/original.jpg") == "k/done/thumbnail.jpg"
    assert keys.result("a/b/c/original.tiff") == "a/b/c/result.json"


def test_a_result_reads_back_as_written_with_the_fields_it_always_had() -> None:
    result = JobResult(
        job_id="j1",
        width=4000,
        height=3000,
        counts={"seedling": 2, "weed": 0},
        detections=[
            StoredDetection(bbox=[1.0, 2.5, 30.0, 40.0], score=0.9, label="seedling"),
            StoredDetection(bbox=[50.0, 60.0, 90.0, 99.0], score=0.8125, label="seedling"),
        ],
    )
    data = result.to_bytes()
    assert json.loads(data) == {
        "job_id": "j1",
        "width": 4000,
        "height": 3000,
        "counts": {"seedling": 2, "weed": 0},
        "detections": [
            {"bbox": [1.0, 2.5, 30.0, 40.0], "score": 0.9, "label": "seedling"},
            {"bbox": [50.0, 60.0, 90.0, 99.0], "score": 0.8125, "label": "seedling"},
        ],
    }
    assert data.startswith(b'{"job_id": "j1", "width": 4000')  # json.dumps, as before
    assert JobResult.from_bytes(data) == result


def test_a_document_that_is_not_a_result_is_refused() -> None:
    with pytest.raises(ValidationError):
        JobResult.from_bytes(b'{"job_id": "j1", "width": 10, "height": 10, "counts": {}}')
    with pytest.raises(ValidationError):
        JobResult.from_bytes(
            json.dumps(
                {
                    "job_id": "j1",
                    "width": 10,
                    "height": 10,
                    "counts": {},
                    "detections": [{"bbox": [0, 0, 1, 1], "score": 1.0}],
                }
            ).encode()
        )
