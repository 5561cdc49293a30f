"""Tally's object store: photo originals and results, in any S3 (moto's server locally)."""

from tally_storage import keys
from tally_storage._result import JobResult, ResultModel, StoredDetection
from tally_storage._s3 import (
    PART_SIZE,
    ObjectNotFoundError,
    ObjectStore,
    ObjectTooLargeError,
    S3Settings,
    StoredObject,
)
from tally_storage._settings import S3Fields

__all__ = [
    "PART_SIZE",
    "JobResult",
    "ObjectNotFoundError",
    "ObjectStore",
    "ObjectTooLargeError",
    "ResultModel",
    "S3Fields",
    "S3Settings",
    "StoredDetection",
    "StoredObject",
    "keys",
]
