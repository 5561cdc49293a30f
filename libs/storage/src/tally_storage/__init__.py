"""Tally's object store: photo originals and results, in any S3 (moto's server locally)."""

from tally_storage._s3 import (
    PART_SIZE,
    ObjectNotFoundError,
    ObjectStore,
    ObjectTooLargeError,
    S3Settings,
    StoredObject,
)

__all__ = [
    "PART_SIZE",
    "ObjectNotFoundError",
    "ObjectStore",
    "ObjectTooLargeError",
    "S3Settings",
    "StoredObject",
]
