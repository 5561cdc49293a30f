"""Intake's pure parts: the names files are stored and shown under, and the check of a photo."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tally_upload._intake import (
    MAX_FILENAME_CHARS,
    AcceptedPhoto,
    RejectedPhoto,
    check_photo,
    safe_filename,
    status_for,
)


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("tray-1.jpg", "tray-1.jpg"),
        ("Serre 3 · été.jpg", "Serre 3 · été.jpg"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\ana\\Photos\\tray.jpg", "tray.jpg"),
        ("photos/2026\\mixed/a.png", "a.png"),
        ("tray\x00.jpg", "tray.jpg"),
        ("\x1b[31mred\x1b[0m.jpg", "[31mred[0m.jpg"),
        ("invoice\u202egpj.exe", "invoicegpj.exe"),  # a right-to-left override, shown reversed
        ("zero\u200bwidth\ufeff.jpg", "zerowidth.jpg"),
        ("  many \t\n  spaces\u00a0\u2028here .jpg ", "many spaces here .jpg"),
        ("e\u0301te\u0301.jpg", "été.jpg"),  # decomposed accents become the composed ones
        ("lone\ud800surrogate.jpg", "lonesurrogate.jpg"),
        ("", "unnamed"),
        ("dir/", "unnamed"),
        ("\x00\x01\u202e", "unnamed"),
        ("..", "unnamed"),
        (" . ", "unnamed"),
    ],
)
def test_a_filename_is_kept_as_a_safe_display_basename(sent: str, kept: str) -> None:
    assert safe_filename(sent) == kept


def test_a_long_filename_is_cut_to_the_limit_with_its_extension_kept() -> None:
    name = safe_filename("a" * 3000 + ".jpeg")
    assert len(name) == MAX_FILENAME_CHARS
    assert name == "a" * (MAX_FILENAME_CHARS - 5) + ".jpeg"
    no_extension = safe_filename("b" * 3000)
    assert no_extension == "b" * MAX_FILENAME_CHARS
    long_tail = safe_filename("c" * 100 + "." + "d" * 3000)  # not an extension: just cut
    assert len(long_tail) == MAX_FILENAME_CHARS
    assert long_tail.startswith("c" * 100 + ".")
    exactly = "e" * (MAX_FILENAME_CHARS - 4) + ".jpg"
    assert safe_filename(exactly) == exactly


def test_whatever_is_sent_the_name_has_no_control_or_format_character() -> None:
    sent = "".join(chr(c) for c in range(0x2100)) + ".jpg"
    name = safe_filename(sent)
    assert len(name) <= MAX_FILENAME_CHARS
    assert name.isprintable()
    assert name.encode("utf-8")


def _photo(mode: str, size: tuple[int, int], exif_orientation: int | None = None) -> bytes:
    buffer = io.BytesIO()
    image = Image.new(mode, size, 128 if mode == "L" else None)
    if exif_orientation is None:
        image.save(buffer, format="PNG")
    else:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        image.convert("RGB").save(buffer, format="JPEG", exif=exif)
    return buffer.getvalue()


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "I;16", "1", "LA"])
def test_a_photo_of_any_mode_gets_an_rgb_jpeg_thumbnail(mode: str) -> None:
    outcome = check_photo("a.png", _photo(mode, (1200, 600)), 100_000_000, 320)
    assert isinstance(outcome, AcceptedPhoto)
    assert (outcome.format, outcome.width, outcome.height) == ("PNG", 1200, 600)
    with Image.open(io.BytesIO(outcome.thumbnail)) as thumbnail:
        assert (thumbnail.format, thumbnail.mode, thumbnail.size) == ("JPEG", "RGB", (320, 160))


def test_a_grey_photo_keeps_its_grey_in_the_thumbnail() -> None:
    outcome = check_photo("grey.png", _photo("L", (800, 800)), 100_000_000, 320)
    assert isinstance(outcome, AcceptedPhoto)
    with Image.open(io.BytesIO(outcome.thumbnail)) as thumbnail:
        assert set(thumbnail.getpixel((10, 10))) <= {127, 128, 129}  # type: ignore[arg-type]


def test_the_size_of_a_photo_is_its_upright_size() -> None:
    outcome = check_photo("turned.jpg", _photo("RGB", (400, 200), exif_orientation=6), 10**8, 320)
    assert isinstance(outcome, AcceptedPhoto)
    assert (outcome.width, outcome.height) == (200, 400)


def test_a_jpeg_thumbnail_from_the_reduced_decode_matches_one_from_every_pixel() -> None:
    # Edges and smooth shading both: what a DCT-scaled decode could blur or shift.
    photo = Image.effect_mandelbrot((4000, 3000), (-2.0, -1.2, 1.0, 1.2), 60).convert("RGB")
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=92)
    outcome = check_photo("big.jpg", buffer.getvalue(), 100_000_000, 320)
    assert isinstance(outcome, AcceptedPhoto)
    assert (outcome.width, outcome.height) == (4000, 3000)
    with Image.open(io.BytesIO(buffer.getvalue())) as full:
        full.load()  # every pixel first: thumbnail() would use a draft on an unloaded JPEG
        full.thumbnail((320, 320))
        encoded = io.BytesIO()
        full.save(encoded, format="JPEG", quality=85)  # as intake encodes its thumbnails
    with Image.open(encoded) as wanted, Image.open(io.BytesIO(outcome.thumbnail)) as thumbnail:
        assert thumbnail.size == wanted.size == (320, 240)
        diff = np.abs(np.asarray(thumbnail, np.int16) - np.asarray(wanted, np.int16))
    assert diff.mean() < 2.0
    assert np.percentile(diff, 99) < 12


def test_a_refusal_carries_the_images_code_and_a_sentence_of_ours() -> None:
    data = _photo("RGB", (800, 600))
    outcome = check_photo("cut.png", data[: len(data) // 2], 100_000_000, 320)
    assert isinstance(outcome, RejectedPhoto)
    assert outcome.code == "corrupt_image"
    assert outcome.message == "the PNG data is damaged"


def test_busy_files_alone_are_a_503_and_mixed_refusals_a_422() -> None:
    busy = RejectedPhoto("a.jpg", "busy", "")
    assert status_for([busy, busy]) == 503
    assert status_for([busy, RejectedPhoto("b.jpg", "corrupt_image", "")]) == 422
