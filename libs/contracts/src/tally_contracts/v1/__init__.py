"""Version 1 of the bus messages."""

from tally_contracts.v1.messages_pb2 import (
    Cancel,
    ChunkDetections,
    ChunkFailure,
    ChunkResult,
    DetectChunk,
    Detection,
    DetectionParams,
    JobEvent,
    JobRef,
    JobStatus,
    ModelRef,
    PhotoUploaded,
    SessionWait,
    SliceBox,
    SliceDetections,
)

__all__ = [
    "Cancel",
    "ChunkDetections",
    "ChunkFailure",
    "ChunkResult",
    "DetectChunk",
    "Detection",
    "DetectionParams",
    "JobEvent",
    "JobRef",
    "JobStatus",
    "ModelRef",
    "PhotoUploaded",
    "SessionWait",
    "SliceBox",
    "SliceDetections",
]
