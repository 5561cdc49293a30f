"""What a session export is made of: CSV rows, JSON lines and the pieces of a COCO document,
built from one job (and its result) at a time. Pure: the route (routes/exports.py) reads the
records and the object store, and streams what these return."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from tally_contracts.statuses import JobStatus
from tally_db import Job
from tally_storage import JobResult as StoredResult

# Spreadsheets run a cell that starts with one of these as a formula (CSV injection, OWASP):
# such a text cell is written with a `'` before it, which they show as plain text.
FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")
CSV_FIXED: Final = ("job_id", "image_id", "filename", "status")
CSV_AFTER_COUNTS: Final = (
    "detections",
    "warnings",
    "error_code",
    "error_message",
    "created_at",
    "started_at",
    "completed_at",
    "seconds_to_completion",
)
COCO_SUPERCATEGORY: Final = "object"


def guard_formula(text: str) -> str:
    """`text` as a spreadsheet shows it, never runs it."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def coco_bbox(bbox: Sequence[float]) -> list[float]:
    """Tally's [x1, y1, x2, y2] as COCO's [x, y, width, height] (top-left corner and size)."""
    x1, y1, x2, y2 = bbox
    return [x1, y1, x2 - x1, y2 - y1]


def _moment(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def seconds_to_completion(job: Job) -> float | None:
    """From the upload to the job's end (whatever it ended as); None while it runs."""
    if job.completed_at is None:
        return None
    return round((job.completed_at - job.created_at).total_seconds(), 3)


def csv_header(labels: Sequence[str]) -> bytes:
    return _csv_line([*CSV_FIXED, *(f"count_{label}" for label in labels), *CSV_AFTER_COUNTS])


def csv_row(
    job: Job, counts: Mapping[str, int] | None, detections: int | None, labels: Sequence[str]
) -> bytes:
    """One job as a CSV line (CRLF, RFC 4180 quoting): counts per label (0 for a label its
    result lacks) and the number of detections of a completed job, empty cells otherwise."""
    shown = counts if job.status == JobStatus.COMPLETED else None
    per_label = ["" if shown is None else str(shown.get(label, 0)) for label in labels]
    seconds = seconds_to_completion(job)
    return _csv_line(
        [
            str(job.id),
            str(job.image_id),
            guard_formula(job.filename),
            job.status,
            *per_label,
            "" if shown is None or detections is None else str(detections),
            ";".join(job.warnings),
            job.error_code or "",
            guard_formula(job.error_message or ""),
            _moment(job.created_at) or "",
            _moment(job.started_at) or "",
            _moment(job.completed_at) or "",
            "" if seconds is None else str(seconds),
        ]
    )


def _csv_line(cells: Iterable[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(cells)
    return buffer.getvalue().encode()


def job_fields(job: Job) -> dict[str, Any]:
    """A job's own fields as an export shows them."""
    return {
        "job_id": str(job.id),
        "image_id": str(job.image_id),
        "session_id": str(job.session_id),
        "filename": job.filename,
        "status": job.status,
        "width": job.width,
        "height": job.height,
        "warnings": list(job.warnings),
        "error_code": job.error_code,
        "error_message": job.error_message,
        "created_at": _moment(job.created_at),
        "started_at": _moment(job.started_at),
        "completed_at": _moment(job.completed_at),
        "seconds_to_completion": seconds_to_completion(job),
    }


def json_line(job: Job, result: StoredResult | None) -> bytes:
    """One job as a JSON line: its fields and, once completed, its result (`null` before)."""
    shown = None
    if result is not None:
        shown = {
            "width": result.width,
            "height": result.height,
            "counts": result.counts,
            "detections": [d.model_dump() for d in result.detections],
        }
    return _json(job_fields(job) | {"result": shown}) + b"\n"


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass
class Coco:
    """One COCO detection document, written in pieces: `head()`, then `annotations()` of each
    image (`image()` gives that image's entry of the `images` array, kept apart by the caller
    until the annotations are out), `between()`, the images joined by commas, and `tail()`
    with the categories. Ids are 1, 2, … in the order things are given; category ids follow
    `labels` (sorted) and then the labels first seen in a result."""

    description: str
    created: datetime
    labels: Sequence[str] = ()
    categories: dict[str, int] = field(init=False, default_factory=dict)
    images: int = field(init=False, default=0)
    _annotations: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        for label in sorted(set(self.labels)):
            self.category(label)

    def category(self, label: str) -> int:
        return self.categories.setdefault(label, len(self.categories) + 1)

    def next_image(self) -> int:
        """The id of the next image."""
        self.images += 1
        return self.images

    def head(self) -> bytes:
        info = {
            "description": self.description,
            "version": "1.0",
            "year": self.created.year,
            "contributor": "Tally",
            "date_created": self.created.isoformat(),
        }
        return b'{"info":' + _json(info) + b',"licenses":[],"annotations":['

    def annotations(self, image_id: int, result: StoredResult) -> bytes:
        """The annotations of one image, each with a comma before it but the document's first."""
        pieces = []
        for detection in result.detections:
            self._annotations += 1
            x, y, w, h = coco_bbox(detection.bbox)
            annotation = {
                "id": self._annotations,
                "image_id": image_id,
                "category_id": self.category(detection.label),
                "bbox": [x, y, w, h],
                "area": w * h,
                "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
                "iscrowd": 0,
                "score": detection.score,
            }
            comma = b"," if self._annotations > 1 else b""
            pieces.append(comma + _json(annotation))
        return b"".join(pieces)

    @staticmethod
    def image(image_id: int, job: Job, result: StoredResult) -> bytes:
        return _json(
            {
                "id": image_id,
                "file_name": job.filename,
                "width": result.width,
                "height": result.height,
                "tally_job_id": str(job.id),
            }
        )

    @staticmethod
    def between() -> bytes:
        return b'],"images":['

    def tail(self) -> bytes:
        categories = [
            {"id": number, "name": label, "supercategory": COCO_SUPERCATEGORY}
            for label, number in self.categories.items()
        ]
        return b'],"categories":' + _json(categories) + b"}"


def coco_document(job: Job, result: StoredResult, created: datetime) -> dict[str, Any]:
    """One job's result as a whole COCO document: one image (id 1)."""
    coco = Coco(f"Tally job {job.id}", created, labels=[*result.counts])
    head = coco.head()
    image_id = coco.next_image()
    annotations = coco.annotations(image_id, result)
    image = coco.image(image_id, job, result)
    text = head + annotations + coco.between() + image + coco.tail()
    document: dict[str, Any] = json.loads(text)
    return document
