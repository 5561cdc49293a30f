"""Opening untrusted image bytes: every way a file can be bad gets its own clear error."""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

ImageErrorCode = Literal[
    "empty_file", "unsupported_format", "corrupt_image", "image_too_small", "image_too_large"
]

SUPPORTED_FORMATS: Final = frozenset({"JPEG", "PNG", "WEBP", "TIFF", "BMP"})
DEFAULT_MAX_PIXELS: Final = 100_000_000  # 100 MP: 2.5× a 4000×3000 photo's 12 MP, far below a bomb
DEFAULT_MIN_SIDE: Final = 32
logger = logging.getLogger(__name__)


class ImageError(ValueError):
    """An image that cannot be processed; `code` is stable and safe to show to a user."""

    def __init__(self, code: ImageErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ImageErrorCode = code
        self.message = message


@dataclass(frozen=True, slots=True)
class ImageInfo:
    format: str
    width: int
    height: int


def inspect_image(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int = DEFAULT_MIN_SIDE
) -> ImageInfo:
    """Read only the header: format and size, checked against the limits, without decoding."""
    if not data:
        raise ImageError("empty_file", "the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Our own limit below decides; Pillow's warning for > 89 MP would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                fmt, (width, height) = image.format or "", image.size
    except Image.DecompressionBombError:
        # Pillow refuses to even open an image over twice its own bomb limit (2 × 89 MP).
        raise ImageError(
            "image_too_large",
            f"the image is over Pillow's bomb limit, far beyond the limit of "
            f"{max_pixels / 1e6:.0f} MP",
        ) from None
    except UnidentifiedImageError:
        raise ImageError(
            "unsupported_format", "not an image in a supported format (JPEG, PNG, WebP, TIFF, BMP)"
        ) from None
    except (OSError, ValueError, SyntaxError) as exc:
        # Pillow's text is for us, not for the customer (the message is shown to them as is).
        logger.info("unreadable image header: %s: %s", type(exc).__name__, exc)
        raise ImageError("corrupt_image", "the image header cannot be read") from None
    if fmt not in SUPPORTED_FORMATS:
        raise ImageError("unsupported_format", f"{fmt or 'this'} images are not supported")
    if width * height > max_pixels:
        raise ImageError(
            "image_too_large",
            f"{width}x{height} is {width * height / 1e6:.0f} MP, over the limit of "
            f"{max_pixels / 1e6:.0f} MP",
        )
    if min(width, height) < min_side:
        raise ImageError(
            "image_too_small", f"{width}x{height} is smaller than {min_side} px on a side"
        )
    return ImageInfo(fmt, width, height)


def decode_upright(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int = DEFAULT_MIN_SIDE
) -> Image.Image:
    """Decode every pixel (a header can lie about what follows it), in the file's own mode: a
    grey photo stays 1 byte a pixel, where RGB would take 4. Upright per EXIF, turned in place
    (no copy when there is nothing to turn). Blocking: call it from a worker thread."""
    info = inspect_image(data, max_pixels, min_side)
    try:
        with warnings.catch_warnings():
            # The size was checked above against our own limit; Pillow's bomb warning is moot.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        logger.info("damaged %s data: %s: %s", info.format, type(exc).__name__, exc)
        raise ImageError("corrupt_image", f"the {info.format} data is damaged") from None
    return image


def decode_image(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int = DEFAULT_MIN_SIDE
) -> NDArray[np.uint8]:
    """Decode to an H×W×3 RGB array, upright per EXIF. Blocking: call it from a worker thread."""
    with decode_upright(data, max_pixels, min_side) as image:
        if image.mode == "RGB":
            return np.asarray(image)
        with image.convert("RGB") as rgb:
            return np.asarray(rgb)
