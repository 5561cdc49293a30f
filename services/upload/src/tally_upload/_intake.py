"""Photo intake: what is accepted, what is refused and why. Pure functions, run off the loop."""

from __future__ import annotations

import io
import unicodedata
from dataclasses import dataclass

from tally_inference import ImageError, decode_reduced
from tally_storage import keys

# HTTP status for each refusal code, when every file of a request is refused.
STATUS_FOR_CODE: dict[str, int] = {
    "file_too_large": 413,
    "unsupported_format": 415,
    "empty_file": 422,
    "corrupt_image": 422,
    "image_too_small": 422,
    "image_too_large": 422,
    "busy": 503,  # no room in the decode budget in time: the same file may be sent again
}
# Modes a thumbnail can be made from before converting it (resampling them is exact); the others
# (palette, 1-bit, 16-bit, CMYK…) are converted whole first, as before.
THUMBNAIL_FIRST_MODES = frozenset({"L", "RGB"})
MAX_FILENAME_CHARS = 255
MAX_EXTENSION_CHARS = 16  # a longer "extension" is just the end of a long name


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
        return keys.PHOTO_FORMATS[self.format][1]

    @property
    def extension(self) -> str:
        return keys.PHOTO_FORMATS[self.format][0]


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
    """Decode every byte of the photo (a header can lie), and make its thumbnail. Blocking.

    A JPEG is decoded at the DCT scale its thumbnail needs (`decode_reduced`), other formats
    whole; the decoded image is the only copy: it stays in the file's own mode (a grey photo is
    1 byte a pixel) and the thumbnail is cut from it before any conversion to RGB."""
    try:
        decoded = decode_reduced(data, thumbnail_size, max_pixels=max_pixels)
    except ImageError as exc:
        return RejectedPhoto(filename, exc.code, exc.message)
    width, height = decoded.width, decoded.height
    with decoded.image as image:
        fmt = image.format or ""
        thumb = image if image.mode in THUMBNAIL_FIRST_MODES else image.convert("RGB")
        # thumbnail() works in place; copy() is not needed: `image` is not used after this.
        thumb.thumbnail((thumbnail_size, thumbnail_size))
        if thumb.mode != "RGB":
            thumb = thumb.convert("RGB")
        buffer = io.BytesIO()
        thumb.save(buffer, format="JPEG", quality=85)
        thumb.close()
    return AcceptedPhoto(filename, data, fmt, width, height, buffer.getvalue())


def safe_filename(sent: str) -> str:
    """The name a client sent, made fit to store and show: its last path component (clients send
    `C:\\photos\\a.jpg` or `../a.jpg`), NFC, without control or format characters (NUL is refused
    by PostgreSQL; U+202E turns `gpj.exe` around on screen), runs of white space as one space,
    at most 255 characters with its extension kept; "unnamed" when nothing is left."""
    base = sent.replace("\\", "/").rsplit("/", 1)[-1]
    kept: list[str] = []
    for char in unicodedata.normalize("NFC", base):
        if char.isspace():
            kept.append(" ")
        # Cc: controls (NUL, ESC…); Cf: bidi overrides, zero-width marks; Cs: lone surrogates,
        # which no UTF-8 column can hold.
        elif unicodedata.category(char) not in ("Cc", "Cf", "Cs"):
            kept.append(char)
    name = " ".join("".join(kept).split())
    if len(name) > MAX_FILENAME_CHARS:
        stem, dot, extension = name.rpartition(".")
        if dot and stem and len(extension) < MAX_EXTENSION_CHARS:
            name = stem[: MAX_FILENAME_CHARS - len(extension) - 1].rstrip() + "." + extension
        else:
            name = name[:MAX_FILENAME_CHARS].rstrip()
    return name if name.strip(". ") else "unnamed"


def status_for(rejected: list[RejectedPhoto]) -> int:
    """The status of a request whose every file was refused: shared by all, else 422."""
    statuses = {STATUS_FOR_CODE.get(r.code, 422) for r in rejected}
    return statuses.pop() if len(statuses) == 1 else 422
