"""What an upload costs and whether the tenant may spend it: pure rules, no services."""

from __future__ import annotations

from datetime import UTC, date, datetime

from tally_contracts.v1 import DetectionParams
from tally_db import UsageNow
from tally_upload._intake import AcceptedPhoto
from tally_upload._quota import Costed, first_breach, planned_slices, within_bounds
from tally_web.limits import Limits


def _photo(name: str, width: int, height: int) -> AcceptedPhoto:
    return AcceptedPhoto(name, b"", "JPEG", width, height, b"")


def _usage(photos: int = 0, queued: int = 0, daily: int = 0, monthly: int = 0) -> UsageNow:
    return UsageNow(photos, queued, daily, monthly, date(2026, 12, 1))


def test_a_photo_plans_the_slices_the_orchestrator_will_cut() -> None:
    # The 97 KB photo: 9999x9999 at slice_size 256, overlap 0.5.
    assert planned_slices(9999, 9999, DetectionParams(slice_size=256, overlap=0.5)) == 6084
    assert planned_slices(800, 600, DetectionParams(slice_size=512, overlap=0.25)) == 4
    assert planned_slices(300, 200, DetectionParams(slice_size=512, overlap=0.25)) == 1


def test_a_photo_over_the_slice_limit_is_refused_naming_the_limit_and_its_count() -> None:
    limits = Limits(max_slices_per_photo=100)
    photos = [Costed(_photo("big.png", 9999, 9999), 6084), Costed(_photo("ok.jpg", 800, 600), 4)]
    kept, refused = within_bounds(photos, limits, 256)
    assert [c.photo.filename for c in kept] == ["ok.jpg"]
    (too_many,) = refused
    assert (too_many.filename, too_many.code) == ("big.png", "too_many_slices")
    assert "6084 slices" in too_many.message
    assert "100 per photo (max_slices_per_photo)" in too_many.message
    assert "bigger slice_size" in too_many.message


def test_the_photos_past_the_requests_pixel_limit_are_refused() -> None:
    limits = Limits(max_pixels_per_request=1_000_000)
    photos = [
        Costed(_photo(name, width, height), 4)
        for name, width, height in [
            ("1.jpg", 800, 600),  # 480,000
            ("2.jpg", 800, 600),  # 960,000
            ("3.jpg", 800, 600),  # over: refused
            ("4.jpg", 10, 10),  # after the limit was reached: refused too
        ]
    ]
    kept, refused = within_bounds(photos, limits, 512)
    assert [c.photo.filename for c in kept] == ["1.jpg", "2.jpg"]
    assert [(r.filename, r.code) for r in refused] == [
        ("3.jpg", "request_pixel_limit"),
        ("4.jpg", "request_pixel_limit"),
    ]
    assert "1000000 pixels" in refused[0].message
    assert "max_pixels_per_request" in refused[0].message


def test_a_request_within_every_quota_passes() -> None:
    limits = Limits(queued_photos=10, queued_slices=100, daily_slices=100, monthly_slices=100)
    assert first_breach(_usage(9, 90, 90, 90), limits, 1, 10) is None


def test_queued_work_over_its_quota_says_what_is_queued_and_to_retry_in_a_minute() -> None:
    limits = Limits(queued_photos=10, queued_slices=1000)
    photos = first_breach(_usage(photos=9), limits, 2, 8)
    assert photos is not None
    assert (photos.quota, photos.limit, photos.used, photos.asked) == ("queued_photos", 10, 9, 2)
    assert photos.retry_after_s == 60
    slices = first_breach(_usage(queued=995), limits, 1, 8)
    assert slices is not None
    assert (slices.quota, slices.retry_after_s) == ("queued_slices", 60)
    assert slices.message == (
        "the queued_slices quota is 1000 slices queued at once; 995 are queued and this "
        "request plans 8"
    )


def test_the_days_quota_waits_for_utc_midnight_and_the_months_for_the_next_month() -> None:
    limits = Limits(daily_slices=100, monthly_slices=1000)
    now = datetime(2026, 12, 31, 23, 59, 30, tzinfo=UTC)
    day = first_breach(_usage(daily=95), limits, 1, 10, now)
    assert day is not None
    assert (day.quota, day.limit, day.used, day.retry_after_s) == ("daily_slices", 100, 95, 30)
    month = first_breach(_usage(monthly=995), limits, 1, 10, datetime(2026, 12, 1, tzinfo=UTC))
    assert month is not None
    assert (month.quota, month.retry_after_s) == ("monthly_slices", 31 * 86400)
    assert "were planned this month" in month.message


def test_a_request_alone_over_a_quota_says_to_send_fewer_photos() -> None:
    breach = first_breach(_usage(), Limits(daily_slices=100), 3, 150)
    assert breach is not None
    assert breach.quota == "daily_slices"
    assert breach.message.endswith("the request alone is over it, send fewer photos at a time")
