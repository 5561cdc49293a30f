"""What an export is made of, one job at a time: CSV rows, JSON lines, COCO's pieces."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tally_db import Job
from tally_gateway._exports import (
    Coco,
    coco_bbox,
    coco_document,
    csv_header,
    csv_row,
    guard_formula,
    json_line,
)
from tally_storage import JobResult as StoredResult

UPLOADED = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


def _job(status: str = "completed", filename: str = "tray.jpg", **fields: Any) -> Job:
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "tenant_id": uuid.uuid4(),
        "session_id": uuid.uuid4(),
        "image_id": uuid.uuid4(),
        "filename": filename,
        "object_key": "t/s/j/original.jpg",
        "width": 400,
        "height": 300,
        "status": status,
        "phase": "done",
        "processed": 4,
        "total": 4,
        "chunk_count": 1,
        "error_code": None,
        "error_message": None,
        "warnings": [],
        "created_at": UPLOADED,
        "started_at": UPLOADED + timedelta(seconds=1),
        "completed_at": UPLOADED + timedelta(seconds=2.5) if status != "queued" else None,
        "updated_at": UPLOADED,
    }
    return Job(**(values | fields))


def _result(job: Job, *detections: tuple[list[float], str]) -> StoredResult:
    counts: dict[str, int] = {}
    for _, label in detections:
        counts[label] = counts.get(label, 0) + 1
    return StoredResult.model_validate(
        {
            "job_id": str(job.id),
            "width": 400,
            "height": 300,
            "counts": counts,
            "detections": [
                {"bbox": bbox, "score": 0.5 + n / 10, "label": label}
                for n, (bbox, label) in enumerate(detections)
            ],
        }
    )


def _cells(line: bytes) -> list[str]:
    return next(csv.reader(io.StringIO(line.decode())))


def test_a_box_becomes_its_top_left_corner_and_its_size() -> None:
    assert coco_bbox([10, 20, 40, 60]) == [10, 20, 30, 40]
    assert coco_bbox([0.5, 1.5, 2.0, 4.0]) == [0.5, 1.5, 1.5, 2.5]


@pytest.mark.parametrize("text", ["=HYPERLINK(1)", "+1", "-2", "@SUM(A1)", "\tx", "\rx"])
def test_text_a_spreadsheet_would_run_gets_a_quote_before_it(text: str) -> None:
    assert guard_formula(text) == "'" + text


def test_plain_text_is_left_as_it_is() -> None:
    assert guard_formula("tray 1 = good.jpg") == "tray 1 = good.jpg"


def test_a_completed_jobs_row_has_its_counts_under_the_sessions_labels() -> None:
    job = _job()
    header = _cells(csv_header(["seedling", "weed"]))
    row = dict(
        zip(header, _cells(csv_row(job, {"seedling": 3}, 3, ["seedling", "weed"])), strict=True)
    )
    assert header[:4] == ["job_id", "image_id", "filename", "status"]
    assert (row["count_seedling"], row["count_weed"], row["detections"]) == ("3", "0", "3")
    assert (row["job_id"], row["status"]) == (str(job.id), "completed")
    assert row["created_at"] == UPLOADED.isoformat()
    assert row["seconds_to_completion"] == "2.5"


def test_a_failed_jobs_row_has_its_error_and_no_counts() -> None:
    job = _job(
        "failed",
        error_code="unreadable",
        error_message="-cannot decode",
        warnings=["low_confidence", "no_detections"],
    )
    row = dict(
        zip(
            _cells(csv_header(["seedling"])),
            _cells(csv_row(job, None, None, ["seedling"])),
            strict=True,
        )
    )
    assert (row["count_seedling"], row["detections"]) == ("", "")
    assert (row["error_code"], row["error_message"]) == ("unreadable", "'-cannot decode")
    assert row["warnings"] == "low_confidence;no_detections"


def test_a_row_quotes_what_csv_must_and_guards_a_formula_filename() -> None:
    job = _job(filename='=cmd|"/c calc"!A0, tray.jpg')
    line = csv_row(job, {}, 0, [])
    assert line.endswith(b"\r\n")
    assert line.count(b"\r\n") == 1
    assert _cells(line)[2] == "'" + job.filename


def test_a_json_line_is_one_line_with_the_job_and_its_result() -> None:
    job = _job(filename="line\nbreak.jpg")
    result = _result(job, ([1, 2, 3, 4], "seedling"))
    line = json_line(job, result)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    body = json.loads(line)
    assert (body["job_id"], body["filename"], body["status"]) == (
        str(job.id),
        "line\nbreak.jpg",
        "completed",
    )
    assert body["result"] == {
        "width": 400,
        "height": 300,
        "counts": {"seedling": 1},
        "detections": [{"bbox": [1.0, 2.0, 3.0, 4.0], "score": 0.5, "label": "seedling"}],
    }
    assert json.loads(json_line(_job("queued"), None))["result"] is None


def test_coco_pieces_joined_are_one_document_with_ids_counted_from_one() -> None:
    coco = Coco("Tally session s", UPLOADED, labels=["weed", "seedling"])
    jobs = [_job(filename=f"{n}.jpg") for n in range(3)]
    results = [
        _result(jobs[0], ([0, 0, 10, 10], "seedling"), ([5, 5, 7, 9], "weed")),
        _result(jobs[1]),  # nothing found: an image without annotations
        _result(jobs[2], ([1, 1, 2, 2], "moss")),  # a label the session had not had
    ]
    annotations, images = [], []
    for job, result in zip(jobs, results, strict=True):
        image_id = coco.next_image()
        annotations.append(coco.annotations(image_id, result))
        images.append(coco.image(image_id, job, result))
    text = coco.head() + b"".join(annotations) + coco.between() + b",".join(images) + coco.tail()
    document = json.loads(text)
    assert [i["id"] for i in document["images"]] == [1, 2, 3]
    assert [i["file_name"] for i in document["images"]] == ["0.jpg", "1.jpg", "2.jpg"]
    assert document["images"][0]["tally_job_id"] == str(jobs[0].id)
    assert document["categories"] == [
        {"id": 1, "name": "seedling", "supercategory": "object"},
        {"id": 2, "name": "weed", "supercategory": "object"},
        {"id": 3, "name": "moss", "supercategory": "object"},
    ]
    first, second, third = document["annotations"]
    assert [a["id"] for a in (first, second, third)] == [1, 2, 3]
    assert (second["image_id"], second["category_id"], second["bbox"]) == (1, 2, [5, 5, 2, 4])
    assert (second["area"], second["iscrowd"]) == (8, 0)
    assert (third["image_id"], third["category_id"]) == (3, 3)
    assert document["info"]["year"] == 2026


def test_a_coco_document_without_any_annotation_is_still_valid_json() -> None:
    coco = Coco("empty", UPLOADED)
    document = json.loads(coco.head() + coco.between() + coco.tail())
    assert (document["annotations"], document["images"], document["categories"]) == ([], [], [])


def test_one_jobs_result_as_coco_is_one_image_with_its_detections() -> None:
    job = _job()
    result = _result(job, ([10, 20, 40, 60], "seedling"))
    document = coco_document(job, result, UPLOADED)
    assert document["images"] == [
        {"id": 1, "file_name": "tray.jpg", "width": 400, "height": 300, "tally_job_id": str(job.id)}
    ]
    assert document["annotations"][0]["bbox"] == [10, 20, 30, 40]
    assert document["annotations"][0]["score"] == 0.5
    assert document["categories"][0]["name"] == "seedling"
