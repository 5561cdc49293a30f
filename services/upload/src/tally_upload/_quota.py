"""What an upload costs, and whether the tenant may spend it: the slices each photo plans, the
bounds of one photo and one request (refusals, like a bad file's), and the tenant's quotas of
queued work and of slices a day and a month (a 429 for the whole request, nothing stored)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tally_contracts.v1 import DetectionParams
from tally_db import UsageNow
from tally_inference import SliceParams, plan_slices
from tally_upload._intake import AcceptedPhoto, RejectedPhoto
from tally_web.limits import Limits

# Queued work drains as the detectors go: try again in a minute.
QUEUED_RETRY_S = 60


def planned_slices(width: int, height: int, params: DetectionParams) -> int:
    """The slices the orchestrator will plan for the photo: SAHI's plan of its size with the
    session's params as the bus carries them (a float32 overlap, as the orchestrator reads it).
    Blocking (SAHI's geometry in Python: milliseconds for thousands of slices)."""
    return len(plan_slices(width, height, SliceParams(params.slice_size, params.overlap)))


@dataclass(frozen=True, slots=True)
class Costed:
    """An accepted photo with what it plans."""

    photo: AcceptedPhoto
    slices: int


def within_bounds(
    photos: Sequence[Costed], limits: Limits, slice_size: int
) -> tuple[list[Costed], list[RejectedPhoto]]:
    """The photos one request may queue, in order, and the others refused: a photo that plans
    more than `max_slices_per_photo` slices, and, once the photos kept so far hold
    `max_pixels_per_request` pixels, the one that would go over and every one after it."""
    kept: list[Costed] = []
    refused: list[RejectedPhoto] = []
    pixels = 0
    full = False
    for costed in photos:
        photo = costed.photo
        if costed.slices > limits.max_slices_per_photo:
            refused.append(
                RejectedPhoto(
                    photo.filename,
                    "too_many_slices",
                    f"the photo plans {costed.slices} slices at slice_size {slice_size}, over "
                    f"the limit of {limits.max_slices_per_photo} per photo "
                    "(max_slices_per_photo); a bigger slice_size plans fewer",
                )
            )
            continue
        size = photo.width * photo.height
        full = full or pixels + size > limits.max_pixels_per_request
        if full:
            refused.append(
                RejectedPhoto(
                    photo.filename,
                    "request_pixel_limit",
                    f"the request's photos are over {limits.max_pixels_per_request} pixels "
                    "together (max_pixels_per_request); send this one in another request",
                )
            )
            continue
        pixels += size
        kept.append(costed)
    return kept, refused


@dataclass(frozen=True, slots=True)
class QuotaBreach:
    """A quota the request would go over: its name, its limit, what is in use, what the request
    asks, and when to try again."""

    quota: str
    limit: int
    used: int
    asked: int
    retry_after_s: int

    @property
    def message(self) -> str:
        what = {
            "queued_photos": ("photos queued at once", "are queued", "adds"),
            "queued_slices": ("slices queued at once", "are queued", "plans"),
            "daily_slices": ("slices a day (UTC)", "were planned today", "plans"),
            "monthly_slices": ("slices a month (UTC)", "were planned this month", "plans"),
        }
        unit, in_use, asks = what[self.quota]
        text = (
            f"the {self.quota} quota is {self.limit} {unit}; {self.used} {in_use} and this "
            f"request {asks} {self.asked}"
        )
        if self.asked > self.limit:
            return f"{text}: the request alone is over it, send fewer photos at a time"
        return text


class QuotaExceededError(Exception):
    def __init__(self, breach: QuotaBreach) -> None:
        super().__init__(breach.message)
        self.breach = breach


def _until_tomorrow(now: datetime) -> int:
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    return max(1, math.ceil((midnight - now).total_seconds()))


def _until_next_month(now: datetime) -> int:
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    start = datetime(year, month, 1, tzinfo=UTC)
    return max(1, math.ceil((start - now).total_seconds()))


def first_breach(
    usage: UsageNow, limits: Limits, photos: int, slices: int, now: datetime | None = None
) -> QuotaBreach | None:
    """The first quota that `photos` more photos planning `slices` more slices would go over,
    or None: queued work first (it frees soonest), then the day, then the month."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    checks = [
        ("queued_photos", usage.queued_photos, photos, QUEUED_RETRY_S),
        ("queued_slices", usage.queued_slices, slices, QUEUED_RETRY_S),
        ("daily_slices", usage.daily_slices, slices, _until_tomorrow(moment)),
        ("monthly_slices", usage.monthly_slices, slices, _until_next_month(moment)),
    ]
    for quota, used, asked, retry in checks:
        limit: int = getattr(limits, quota)
        if used + asked > limit:
            return QuotaBreach(quota, limit, used, asked, retry)
    return None
