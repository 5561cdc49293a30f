"""Every kind of bad upload gets its own clear error, before any pixel is decoded."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from tally_inference import (
    ImageError,
    decode_checked_image,
    decode_image,
    decode_reduced,
    decode_upright,
    inspect_image,
)


def _encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims a size, with a single empty data chunk (a classic bomb shape)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def _bmp_header(bits: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, 64, 64, 1, bits, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + info


def _code(data: bytes) -> str:
    with pytest.raises(ImageError) as caught:
        decode_image(data)
    assert caught.value.message  # always a human-readable reason
    return caught.value.code


def test_a_good_jpeg_decodes_to_rgb() -> None:
    data = _encode(Image.new("RGB", (640, 480), (10, 200, 30)), "JPEG")
    image = decode_image(data)
    assert image.shape == (480, 640, 3)
    assert image.dtype == np.uint8


def test_png_with_alpha_and_greyscale_become_rgb() -> None:
    assert decode_image(_encode(Image.new("RGBA", (64, 64)), "PNG")).shape == (64, 64, 3)
    assert decode_image(_encode(Image.new("L", (64, 64)), "PNG")).shape == (64, 64, 3)


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (200, 100))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90° clockwise
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    assert decode_image(buffer.getvalue()).shape == (200, 100, 3)


def test_zero_bytes_is_an_empty_file() -> None:
    assert _code(b"") == "empty_file"


def test_random_bytes_are_not_an_image() -> None:
    assert _code(np.random.default_rng(0).bytes(5000)) == "unsupported_format"


def test_a_zip_named_jpg_is_not_an_image() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("photo.jpg", b"not really")
    assert _code(buffer.getvalue()) == "unsupported_format"


def test_an_unsupported_image_format_is_refused() -> None:
    assert _code(_encode(Image.new("RGB", (64, 64)), "GIF")) == "unsupported_format"


def test_a_truncated_jpeg_is_corrupt() -> None:
    data = _encode(Image.effect_noise((800, 600), 50).convert("RGB"), "JPEG")
    assert _code(data[: len(data) // 3]) == "corrupt_image"


def test_a_jpeg_with_garbage_after_the_header_is_corrupt() -> None:
    data = bytearray(_encode(Image.new("RGB", (256, 256), (5, 5, 5)), "JPEG"))
    data[200:] = b"\xff" * (len(data) - 200)
    assert _code(bytes(data)) == "corrupt_image"


def test_a_one_pixel_image_is_too_small() -> None:
    assert _code(_encode(Image.new("RGB", (1, 1)), "PNG")) == "image_too_small"


def test_a_huge_dimension_header_is_refused_without_decoding() -> None:
    bomb = _png_header_only(100_000, 100_000)
    with pytest.raises(ImageError) as caught:
        inspect_image(bomb)
    assert caught.value.code == "image_too_large"
    assert "limit of 100 MP" in caught.value.message


def test_a_decompression_bomb_is_refused() -> None:
    # 12,000 × 12,000 of one colour compresses to a few hundred KB but decodes to 432 MB.
    bomb = _encode(Image.new("L", (12_000, 12_000)), "PNG")
    assert len(bomb) < 1_000_000
    assert _code(bomb) == "image_too_large"


def test_the_pixel_limit_is_configurable() -> None:
    data = _encode(Image.new("RGB", (400, 300)), "PNG")
    with pytest.raises(ImageError, match="over the limit"):
        decode_image(data, max_pixels=100_000)


def test_a_grey_photo_is_decoded_as_grey_one_byte_a_pixel() -> None:
    with decode_upright(_encode(Image.new("L", (640, 480), 7), "PNG")) as image:
        assert (image.mode, image.size) == ("L", (640, 480))


def test_decode_upright_turns_the_image_per_its_exif() -> None:
    exif = Image.Exif()
    exif[0x0112] = 8  # rotated 90° counter-clockwise
    buffer = io.BytesIO()
    Image.new("RGB", (300, 100)).save(buffer, format="JPEG", exif=exif)
    with decode_upright(buffer.getvalue()) as image:
        assert image.size == (100, 300)
        assert 0x0112 not in image.getexif()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_bmp_header(bits=7), "the image header cannot be read"),  # Pillow: "Unsupported BMP…"
        (_encode(Image.effect_noise((400, 300), 50), "PNG")[:600], "the PNG data is damaged"),
        (_encode(Image.effect_noise((400, 300), 50), "JPEG")[:700], "the JPEG data is damaged"),
    ],
    ids=["png-header", "png-data", "jpeg-data"],
)
def test_messages_are_our_own_sentences_not_pillows(data: bytes, message: str) -> None:
    """A customer reads the message: Pillow's text (and its changes) stay in our logs."""
    with pytest.raises(ImageError) as caught:
        decode_image(data)
    assert (caught.value.code, caught.value.message) == ("corrupt_image", message)


def _noisy_jpeg(size: tuple[int, int], orientation: int | None = None) -> bytes:
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.effect_noise(size, 40).convert("RGB").save(buffer, format="JPEG", exif=exif)
    return buffer.getvalue()


def test_a_reduced_jpeg_is_decoded_at_the_smallest_dct_scale_still_as_large_as_asked() -> None:
    reduced = decode_reduced(_noisy_jpeg((4000, 3000)), 320)
    # 3000 / 320 is over 8: the 1/8 scale, 500 × 375, still covers 320 on both sides.
    assert reduced.image.size == (500, 375)
    assert (reduced.width, reduced.height) == (4000, 3000)
    assert decode_reduced(_noisy_jpeg((1000, 800)), 320).image.size == (500, 400)  # 1/2
    assert decode_reduced(_noisy_jpeg((600, 500)), 320).image.size == (600, 500)  # whole


def test_a_reduced_photo_is_upright_and_tells_its_upright_size() -> None:
    reduced = decode_reduced(_noisy_jpeg((4000, 3000), orientation=6), 320)
    assert reduced.image.size == (375, 500)
    assert (reduced.width, reduced.height) == (3000, 4000)


def test_a_reduced_decode_refuses_what_a_full_decode_refuses() -> None:
    data = _noisy_jpeg((1600, 1200))
    garbage = bytearray(data)
    garbage[200:] = b"\xff" * (len(data) - 200)
    for bad in (data[: len(data) // 3], bytes(garbage), data[:700]):
        with pytest.raises(ImageError) as full:
            decode_upright(bad)
        with pytest.raises(ImageError) as reduced:
            decode_reduced(bad, 320)
        assert (reduced.value.code, reduced.value.message) == (full.value.code, full.value.message)


def test_formats_without_dct_scaling_are_decoded_whole() -> None:
    reduced = decode_reduced(_encode(Image.new("RGB", (1600, 1200)), "PNG"), 320)
    assert reduced.image.size == (1600, 1200)


@pytest.mark.parametrize(
    "data",
    [
        _noisy_jpeg((640, 480)),
        _encode(Image.effect_noise((320, 200), 60), "JPEG"),  # grey
        _noisy_jpeg((200, 100), orientation=6),  # turned: through Pillow
        _encode(Image.effect_noise((320, 200), 60).convert("RGBA"), "PNG"),
        _encode(Image.effect_noise((64, 64), 60).convert("CMYK"), "JPEG"),
    ],
    ids=["rgb-jpeg", "grey-jpeg", "turned-jpeg", "png", "cmyk-jpeg"],
)
def test_a_checked_photo_decodes_to_the_same_pixels_as_decode_image(data: bytes) -> None:
    checked = decode_checked_image(data)
    assert checked.dtype == np.uint8
    np.testing.assert_array_equal(checked, decode_image(data))


def test_a_checked_decode_still_refuses_what_is_not_an_image() -> None:
    with pytest.raises(ImageError) as caught:
        decode_checked_image(b"\xff\xd8\xff\xe0 truncated")
    assert caught.value.code == "corrupt_image"
