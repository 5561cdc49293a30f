"""Opening untrusted image bytes: every way a file can be bad gets its own clear error."""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass
from typing import Final, Literal

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

ImageErrorCode = Literal[
    "empty_file", "unsupported_format", "corrupt_image", "image_too_small", "image_too_large"
]

SUPPORTED_FORMATS: Final = frozenset({"JPEG", "PNG", "WEBP", "TIFF", "BMP"})
DEFAULT_MAX_PIXELS: Final = 100_000_000  # 100 MP: 2.5× a 4000×3000 photo's 12 MP, far below a bomb
DEFAULT_MIN_SIDE: Final = 32
ORIENTATION: Final = 0x0112  # the EXIF tag
TURNED: Final = frozenset({5, 6, 7, 8})  # orientations that swap width and height
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


@dataclass(frozen=True, slots=True)
class Reduced:
    """A photo decoded for its thumbnail: the upright image (a JPEG's at 1/1 to 1/8 of its size
    per side) and the photo's own upright size."""

    image: Image.Image
    width: int
    height: int


def _decode(data: bytes, max_pixels: int, min_side: int, reduce_to: int | None) -> Reduced:
    info = inspect_image(data, max_pixels, min_side)
    try:
        with warnings.catch_warnings():
            # The size was checked above against our own limit; Pillow's bomb warning is moot.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if reduce_to is not None and image.format == "JPEG":
                # libjpeg's DCT scaling (1/2 … 1/8): every entropy-coded byte is still decoded,
                # so damage and truncation are refused as a full decode refuses them, but the
                # inverse DCT, the colour conversion and the memory shrink with the scale.
                image.draft(image.mode, (reduce_to, reduce_to))
            image.load()
            turned = image.getexif().get(ORIENTATION, 1) in TURNED
            ImageOps.exif_transpose(image, in_place=True)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        logger.info("damaged %s data: %s: %s", info.format, type(exc).__name__, exc)
        raise ImageError("corrupt_image", f"the {info.format} data is damaged") from None
    width, height = (info.height, info.width) if turned else (info.width, info.height)
    return Reduced(image, width, height)


def decode_upright(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int = DEFAULT_MIN_SIDE
) -> Image.Image:
    """Decode every pixel (a header can lie about what follows it), in the file's own mode: a
    grey photo stays 1 byte a pixel, where RGB would take 4. Upright per EXIF, turned in place
    (no copy when there is nothing to turn). Blocking: call it from a worker thread."""
    return _decode(data, max_pixels, min_side, None).image


def decode_reduced(
    data: bytes,
    size: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = DEFAULT_MIN_SIDE,
) -> Reduced:
    """Check every byte of the photo as `decode_upright` does, but decode a JPEG only at the
    largest DCT scale (1/2, 1/4, 1/8) that keeps both sides at least `size` px: what a thumbnail
    of `size` needs, in about a third of the time of a full decode. Other formats are decoded
    whole. Upright per EXIF. Blocking: call it from a worker thread."""
    return _decode(data, max_pixels, min_side, size)


def decode_image(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int = DEFAULT_MIN_SIDE
) -> NDArray[np.uint8]:
    """Decode to an H×W×3 RGB array, upright per EXIF. Blocking: call it from a worker thread."""
    with decode_upright(data, max_pixels, min_side) as image:
        if image.mode == "RGB":
            return np.asarray(image)
        with image.convert("RGB") as rgb:
            return np.asarray(rgb)


def decode_checked_image(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int = DEFAULT_MIN_SIDE
) -> NDArray[np.uint8]:
    """`decode_image` for a photo intake has already checked (the detector's originals). A JPEG
    of RGB or grey pixels stored upright goes through OpenCV's decoder straight into the array
    (the same libjpeg-turbo, the same pixels): Pillow holds RGB as 4 bytes a pixel and packs
    them into a copy, a third of its decode's CPU for a 12 MP photo. OpenCV fills a truncated
    JPEG in instead of refusing it, so bytes nobody has checked go to `decode_image`; so does
    every other format, mode or EXIF turn, and whatever OpenCV cannot read."""
    info = inspect_image(data, max_pixels, min_side)
    if info.format == "JPEG":
        with Image.open(io.BytesIO(data)) as header:
            plain = header.mode in ("RGB", "L") and header.getexif().get(ORIENTATION, 1) == 1
        if plain:
            flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
            bgr = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
            if bgr is not None and bgr.shape == (info.height, info.width, 3):
                return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), np.uint8)
    return decode_image(data, max_pixels, min_side)
