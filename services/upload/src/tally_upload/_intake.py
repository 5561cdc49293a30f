"""Photo intake: what is accepted, what is refused and why. Pure functions, run off the loop."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from tally_inference import ImageError, decode_image, inspect_image

# HTTP status for each refusal code, when every file of a request is refused.
STATUS_FOR_CODE: dict[str, int] = {
    "file_too_large": 413,
    "unsupported_format": 415,
    "empty_file": 422,
    "corrupt_image": 422,
    "image_too_small": 422,
    "image_too_large": 422,
}

CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
    "BMP": "image/bmp",
}
EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp"}


@dataclass(frozen=True, slots=True)
class AcceptedPhoto:
    filename: str
    data: bytes
    format: str
    width: int  # upright, after EXIF orientation
    height: int
    thumbnail: bytes  # JPEG

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]


@dataclass(frozen=True, slots=True)
class RejectedPhoto:
    filename: str
    code: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"filename": self.filename, "code": self.code, "message": self.message}


def check_photo(
    filename: str, data: bytes, max_pixels: int, thumbnail_size: int
) -> AcceptedPhoto | RejectedPhoto:
    """Fully decode the photo (a header can lie), and make its thumbnail. Blocking."""
    try:
        info = inspect_image(data, max_pixels=max_pixels)
        pixels = decode_image(data, max_pixels=max_pixels)
    except ImageError as exc:
        return RejectedPhoto(filename, exc.code, exc.message)
    height, width = pixels.shape[:2]
    thumb = Image.fromarray(pixels)
    thumb.thumbnail((thumbnail_size, thumbnail_size))
    buffer = io.BytesIO()
    thumb.save(buffer, format="JPEG", quality=85)
    return AcceptedPhoto(filename, data, info.format, width, height, buffer.getvalue())


def status_for(rejected: list[RejectedPhoto]) -> int:
    """The status of a request whose every file was refused: shared by all, else 422."""
    statuses = {STATUS_FOR_CODE.get(r.code, 422) for r in rejected}
    return statuses.pop() if len(statuses) == 1 else 422
