"""Where a job's objects live in the bucket: one folder per job, `{tenant}/{session}/{job}/`.

    original{ext}    the photo as uploaded (the job's `object_key`; its extension kept)
    thumbnail.jpg    the upload's JPEG thumbnail, beside it
    result.json      the detections (tally_storage.JobResult), beside it, once completed

and a model's ONNX file under `{tenant}/models/` (`shared/models/` for the shared ones).

Upload names the original; everyone else finds the other two beside the job's `object_key`.
"""

from __future__ import annotations

import posixpath
import uuid
from typing import Final

Id = str | uuid.UUID

# The photo formats upload takes (Pillow's names): the extension their original is stored under
# and the content type it is served as. A download's type comes from here, by the stored key's
# extension, never from the name a client sent.
PHOTO_FORMATS: Final = {
    "JPEG": (".jpg", "image/jpeg"),
    "PNG": (".png", "image/png"),
    "WEBP": (".webp", "image/webp"),
    "TIFF": (".tif", "image/tiff"),
    "BMP": (".bmp", "image/bmp"),
}
_TYPES_BY_EXTENSION: Final = dict(PHOTO_FORMATS.values())


def job_folder(tenant_id: Id, session_id: Id, job_id: Id) -> str:
    return f"{tenant_id}/{session_id}/{job_id}"


def original(tenant_id: Id, session_id: Id, job_id: Id, extension: str) -> str:
    """The uploaded photo's key; `extension` with its dot (`.jpg`)."""
    return f"{job_folder(tenant_id, session_id, job_id)}/original{extension}"


def original_content_type(original_key: str) -> str:
    """The content type of the original stored at `original_key`."""
    extension = posixpath.splitext(original_key)[1]
    return _TYPES_BY_EXTENSION.get(extension, "application/octet-stream")


def _beside(original_key: str, name: str) -> str:
    return f"{original_key.rsplit('/', 1)[0]}/{name}"


def thumbnail(original_key: str) -> str:
    return _beside(original_key, "thumbnail.jpg")


def result(original_key: str) -> str:
    return _beside(original_key, "result.json")


def job_objects(original_key: str) -> tuple[str, str, str]:
    """Every object a job may have: its original, thumbnail and result (deleted with it)."""
    return original_key, thumbnail(original_key), result(original_key)


def model_file(tenant_id: Id | None, model_id: Id) -> str:
    """An uploaded model's ONNX file: in its tenant's folder, or `shared/` for the operators'."""
    return f"{tenant_id if tenant_id is not None else 'shared'}/models/{model_id}.onnx"
