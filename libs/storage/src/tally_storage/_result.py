"""`result.json`: a completed job's detections, as the orchestrator writes them beside the
original (tally_storage.keys.result) and the gateway serves them."""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict


class StoredDetection(BaseModel):
    """One detection in original-image pixels: `[x1, y1, x2, y2]`, its score, its label."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bbox: list[float]
    score: float
    label: str


class ResultModel(BaseModel):
    """The model a result came from: the registry's name and version, and its labels (the
    counts have one per label)."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    model_id: str
    name: str
    version: int
    labels: list[str]


class JobResult(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str
    width: int
    height: int
    counts: dict[str, int]
    detections: list[StoredDetection]
    # Absent from the documents written before the model registry (the built-in's).
    model: ResultModel | None = None

    def to_bytes(self) -> bytes:
        # json.dumps, not model_dump_json: the documents stay byte for byte what they were.
        return json.dumps(
            self.model_dump(exclude={"model"} if self.model is None else None)
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> JobResult:
        """Raises pydantic.ValidationError for a document that is not a JobResult."""
        return cls.model_validate_json(data)
