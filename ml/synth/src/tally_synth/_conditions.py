"""How a photo's camera and light differ from the standard set-up, and named sets of such photos.

`Conditions()` is the standard photo: what the generator has always drawn, byte for byte. Each
named condition draws its own `Conditions` per photo from a range, from a random stream of its own
(the scene's stream is untouched), so a condition changes only what it names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np


@dataclass(frozen=True, slots=True)
class Conditions:
    # Pixel scale against the standard camera height: 0.6 is a camera farther away (smaller
    # plants, more of them per photo), 1.5 a nearer one (bigger plants, fewer).
    scale: float = 1.0
    rotation: float = 0.0  # degrees the tray is turned in the photo
    light: float = 1.0  # overall exposure: 0.3–0.5 is a dim greenhouse
    warmth: float = 0.0  # 0 neutral; 1 the orange cast of sodium lamps or low sun
    blur: float | None = None  # lens blur sigma in pixels; None: the standard 0–1.3
    jpeg_quality: int | None = None  # None: the standard 72–92

    def __post_init__(self) -> None:
        if not 0.3 <= self.scale <= 3.0:
            raise ValueError(f"scale {self.scale} is outside 0.3–3.0")
        if not 0.05 <= self.light <= 2.0:
            raise ValueError(f"light {self.light} is outside 0.05–2.0")
        if not 0.0 <= self.warmth <= 1.0:
            raise ValueError(f"warmth {self.warmth} is outside 0–1")
        if self.blur is not None and not 0.0 <= self.blur <= 10.0:
            raise ValueError(f"blur {self.blur} is outside 0–10")
        if self.jpeg_quality is not None and not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"JPEG quality {self.jpeg_quality} is outside 1–100")


STANDARD: Final = Conditions()

Sampler = Callable[[np.random.Generator], Conditions]


def _signed(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high) * rng.choice([-1.0, 1.0]))


def _mixed(rng: np.random.Generator) -> Conditions:
    """Training photos: a third standard, the rest a random mix of every condition below."""
    if rng.random() < 1 / 3:
        return STANDARD
    return Conditions(
        scale=float(np.exp(rng.uniform(np.log(0.55), np.log(1.6)))),
        rotation=_signed(rng, 0.0, 15.0) if rng.random() < 0.5 else 0.0,
        light=float(rng.uniform(0.25, 1.15)) if rng.random() < 0.5 else 1.0,
        warmth=float(rng.uniform(0.3, 1.0)) if rng.random() < 0.35 else 0.0,
        blur=float(rng.uniform(0.0, 4.0)) if rng.random() < 0.4 else None,
        jpeg_quality=int(rng.integers(10, 60)) if rng.random() < 0.4 else None,
    )


# Each held-out condition: what it means, the sampler, and the largest pixel scale it draws (the
# slice overlap must hold the largest object: 120 px × scale).
@dataclass(frozen=True, slots=True)
class Condition:
    name: str
    description: str
    sample: Sampler
    max_scale: float = 1.0


CONDITIONS: Final[dict[str, Condition]] = {
    c.name: c
    for c in (
        Condition("standard", "today's camera height, light and JPEG", lambda rng: STANDARD),
        Condition(
            "far",
            "camera 1.35–1.65× higher: pixel scale 0.6–0.75",
            lambda rng: Conditions(scale=float(rng.uniform(0.6, 0.75))),
            0.75,
        ),
        Condition(
            "near",
            "camera 0.65–0.8× as high: pixel scale 1.25–1.5",
            lambda rng: Conditions(scale=float(rng.uniform(1.25, 1.5))),
            1.5,
        ),
        Condition(
            "rotated",
            "tray turned 4–12° in the photo",
            lambda rng: Conditions(rotation=_signed(rng, 4.0, 12.0)),
        ),
        Condition(
            "dim",
            "exposure 0.3–0.5 of the standard (the sensor noise stays)",
            lambda rng: Conditions(light=float(rng.uniform(0.3, 0.5))),
        ),
        Condition(
            "warm",
            "warm light: red up to +25 %, blue down to −35 %",
            lambda rng: Conditions(warmth=float(rng.uniform(0.6, 1.0))),
        ),
        Condition(
            "soft",
            "soft focus: lens blur sigma 2–3.5 px",
            lambda rng: Conditions(blur=float(rng.uniform(2.0, 3.5))),
        ),
        Condition(
            "jpeg",
            "heavy JPEG compression: quality 12–30",
            lambda rng: Conditions(jpeg_quality=int(rng.integers(12, 31))),
        ),
        Condition("mixed", "training: a third standard, the rest a mix of all", _mixed, 1.6),
    )
}

HELD_OUT: Final[tuple[str, ...]] = tuple(name for name in CONDITIONS if name != "mixed")


def condition(name: str) -> Condition:
    try:
        return CONDITIONS[name]
    except KeyError:
        known = ", ".join(CONDITIONS)
        raise ValueError(f"unknown condition {name!r}; known: {known}") from None


def conditions_rng(seed: int, index: int) -> np.random.Generator:
    """The stream a condition draws photo `index`'s settings from, apart from the scene's."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, index, 0xC0])))
