"""POST /v1/models: a new version of one of the tenant's detectors (an ONNX file).

The file is untrusted: it is only parsed here (tally_inference.check_model: size, operator
domains, the ONNX checker, shape inference, the declared format and labels against the graph),
never run. One that fails a check is refused with the check's code and stores nothing; one that
passes is stored and recorded `validating`, and the registry's Triton controller loads it on the
inference server, runs it on a blank slice and marks it `ready` or `failed`.
"""

from __future__ import annotations

import json
from typing import Final

from fastapi import APIRouter, Request
from starlette.datastructures import FormData, UploadFile

from tally_db import NAME_PATTERN
from tally_inference import FORMATS, ModelCheckError
from tally_upload._models import register_model
from tally_upload.deps import DepsDep
from tally_web import ApiError, WritingTenant
from tally_web.schemas import ModelPublic, error_responses

router = APIRouter(prefix="/v1/models", tags=["models"])

# What a request may hold besides the file: the form's few fields and the part headers.
FORM_OVERHEAD_BYTES: Final = 64 * 1024
MAX_LABELS: Final = 1000
MAX_LABEL_CHARS: Final = 64


@router.post(
    "",
    status_code=201,
    responses=error_responses(400, 401, 403, 411, 413, 415, 422),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "name": {"type": "string", "pattern": NAME_PATTERN.pattern},
                            "format": {"type": "string", "enum": list(FORMATS)},
                            "labels": {
                                "type": "string",
                                "description": "a JSON list of the class names, in order",
                            },
                            "input_size": {"type": "integer", "minimum": 32, "maximum": 4096},
                        },
                        "required": ["file", "name", "format", "labels"],
                    }
                }
            },
        }
    },
)
async def upload_model(request: Request, deps: DepsDep, tenant: WritingTenant) -> ModelPublic:
    limit = deps.settings.max_model_bytes
    form = await _form(request, limit)
    try:
        name = _name(form)
        model_format = _choice(form, "format", FORMATS)
        labels = _labels(form)
        input_size = _input_size(form)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(422, "invalid_request", "the form has no `file` part (the .onnx)")
        data = await upload.read()
    finally:
        await form.close()
    try:
        model = await register_model(
            deps.store,
            deps.objects,
            tenant.id,
            data,
            name=name,
            model_format=model_format,
            labels=labels,
            input_size=input_size,
            max_bytes=limit,
        )
    except ModelCheckError as exc:
        status = 413 if exc.code == "model_too_large" else 422
        raise ApiError(status, exc.code, exc.message) from None
    return ModelPublic.of(model)


async def _form(request: Request, limit: int) -> FormData:
    """The form, its size known before a byte of it is read: a body of a declared length only,
    within the model limit and the form's overhead."""
    declared = request.headers.get("content-length")
    if declared is None:
        raise ApiError(411, "length_required", "a model upload needs a Content-Length header")
    if not declared.isascii() or not declared.isdigit():
        raise ApiError(400, "invalid_request", "the Content-Length header is not a number")
    if int(declared) > limit + FORM_OVERHEAD_BYTES:
        raise ApiError(
            413,
            "model_too_large",
            f"the request is {int(declared):,} bytes; a model may be {limit:,} bytes",
        )
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise ApiError(415, "unsupported_media_type", "a model is uploaded as multipart/form-data")
    try:
        return await request.form(max_files=1, max_fields=8, max_part_size=FORM_OVERHEAD_BYTES)
    except Exception as exc:  # starlette's MultiPartException and the parser's own errors
        raise ApiError(400, "invalid_request", f"the form cannot be read: {exc}") from None


def _text(form: FormData, field: str, *, required: bool = True) -> str | None:
    value = form.get(field)
    if value is None or value == "":
        if required:
            raise ApiError(422, "invalid_request", f"the form has no `{field}` field")
        return None
    if not isinstance(value, str):
        raise ApiError(422, "invalid_request", f"`{field}` is a text field, not a file")
    return value


def _name(form: FormData) -> str:
    name = _text(form, "name")
    assert name is not None
    if not NAME_PATTERN.match(name):
        raise ApiError(
            422,
            "invalid_request",
            "`name` is lower-case letters, digits, '.', '_' and '-', starting with a letter or a "
            "digit, up to 63 characters",
        )
    return name


def _choice(form: FormData, field: str, choices: tuple[str, ...]) -> str:
    value = _text(form, field)
    if value not in choices:
        raise ApiError(422, "invalid_request", f"`{field}` is one of {', '.join(choices)}")
    assert value is not None
    return value


def _labels(form: FormData) -> list[str]:
    text = _text(form, "labels")
    assert text is not None
    try:
        labels = json.loads(text)
    except ValueError:
        labels = None
    if (
        not isinstance(labels, list)
        or not 1 <= len(labels) <= MAX_LABELS
        or not all(isinstance(label, str) for label in labels)
    ):
        raise ApiError(
            422,
            "invalid_request",
            f"`labels` is a JSON list of 1 to {MAX_LABELS} class names, e.g. "
            '["whitefly", "thrips"]',
        )
    for label in labels:
        if not 1 <= len(label) <= MAX_LABEL_CHARS or any(c < " " or c == "\x7f" for c in label):
            raise ApiError(
                422,
                "invalid_request",
                f"each label is 1 to {MAX_LABEL_CHARS} characters without control characters",
            )
    if len(set(labels)) != len(labels):
        raise ApiError(422, "invalid_request", "`labels` names each class once")
    return labels


def _input_size(form: FormData) -> int | None:
    text = _text(form, "input_size", required=False)
    if text is None:
        return None
    if not text.isascii() or not text.isdigit() or not 32 <= int(text) <= 4096:
        raise ApiError(422, "invalid_request", "`input_size` is a number of pixels, 32 to 4096")
    return int(text)
