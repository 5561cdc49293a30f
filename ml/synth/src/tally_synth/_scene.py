"""Procedural greenhouse-tray photos with exact ground truth.

A photo is a seedling tray seen from above: a bench, a plastic tray with a grid of cells filled
with soil, one seedling per cell (some cells empty), weeds in between, plant labels, stones and
perlite as distractors, uneven lighting, lens blur and sensor noise. Every labelled object is
drawn into its own small patch first, so its box is the exact extent of its own pixels, including
the parts a neighbour later covers.

`Conditions` change the camera and the light: pixel scale (camera height), a turned tray, dim or
warm light, soft focus. Plants are drawn upright in their patches whatever the tray's rotation
(a rosette has no up), so ground truth stays exact under every condition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from tally_synth._conditions import STANDARD, Conditions

Label = Literal["seedling", "weed"]
LABELS: Final[tuple[Label, ...]] = ("seedling", "weed")

Image = NDArray[np.uint8]
FloatImage = NDArray[np.float32]

# A pixel belongs to an object where the object's coverage reaches this value.
_COVERAGE_THRESHOLD: Final = 0.5


@dataclass(frozen=True, slots=True)
class Annotation:
    """One object: box in pixel edges (x2, y2 exclusive) of the written image, and its label."""

    bbox: tuple[int, int, int, int]
    label: Label

    def to_json(self) -> dict[str, object]:
        return {"bbox": list(self.bbox), "label": self.label}


@dataclass(frozen=True, slots=True)
class SynthPhoto:
    image: Image  # H×W×3, RGB
    annotations: tuple[Annotation, ...]


def photo_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of photo `index` in the set made with `seed`, independent of the others."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, index])))


def generate_photo(
    rng: np.random.Generator,
    width: int = 4000,
    height: int = 3000,
    conditions: Conditions = STANDARD,
) -> SynthPhoto:
    if width < 64 or height < 64:
        raise ValueError(f"photo size {width}x{height} is too small (minimum 64x64)")
    scale = conditions.scale
    canvas, cells, pitch = _background(rng, width, height, conditions)
    annotations: list[Annotation] = []

    # Distractors that lie under the plants.
    _scatter_perlite(rng, canvas, scale)
    for _ in range(int(rng.integers(0, 3 + len(cells) // 40))):
        _stone(rng, canvas, scale)

    stage = float(rng.uniform(0.35, 0.9))  # growth stage of this tray: seedling size / cell pitch
    empty_fraction = float(rng.uniform(0.03, 0.15))
    for cx, cy in cells:
        if rng.random() < empty_fraction:
            continue
        diameter = float(np.clip(rng.normal(stage * pitch, 0.12 * pitch), 20 * scale, 120 * scale))
        jitter = 0.12 * pitch
        x = cx + rng.uniform(-jitter, jitter)
        y = cy + rng.uniform(-jitter, jitter)
        box = _paste(canvas, *_seedling(rng, diameter), x, y)
        if box is not None:
            annotations.append(Annotation(box, "seedling"))

    weeds = int(rng.poisson(rng.uniform(0.0, 0.05) * len(cells)))
    for _ in range(weeds):
        x = rng.uniform(0, width)
        y = rng.uniform(0, height)
        box = _paste(canvas, *_weed(rng, float(rng.uniform(25.0, 110.0)) * scale), x, y)
        if box is not None:
            annotations.append(Annotation(box, "weed"))

    # Plant labels stand in some cells, above the leaves.
    for cx, cy in cells:
        if rng.random() < 0.02:
            _plant_label(rng, canvas, cx + rng.uniform(-0.3, 0.3) * pitch, cy, scale)

    image = _camera(rng, canvas, conditions)
    return SynthPhoto(image, tuple(annotations))


def _background(
    rng: np.random.Generator, width: int, height: int, conditions: Conditions
) -> tuple[FloatImage, list[tuple[float, float]], float]:
    """Bench, tray and soil-filled cells. Returns the canvas, the cell centres and the pitch."""
    bench_colour = rng.uniform(120, 190) * rng.uniform([0.95, 0.95, 0.9], [1.0, 1.0, 1.0])
    canvas = np.empty((height, width, 3), np.float32)
    canvas[:] = bench_colour
    canvas += _noise(rng, height, width, scale=64, amplitude=10.0)[..., None]

    margin_x = int(width * rng.uniform(0.0, 0.06))
    margin_y = int(height * rng.uniform(0.0, 0.06))
    tray = (margin_x, margin_y, width - margin_x, height - margin_y)
    tray_colour = rng.uniform([15, 15, 15], [60, 55, 50])
    if rng.random() < 0.25:  # terracotta-coloured trays exist too
        tray_colour = rng.uniform([120, 55, 35], [160, 80, 55])
    rim = max(2, int(rng.uniform(4, 12) * conditions.scale))
    turn = _Turn(conditions.rotation, ((tray[0] + tray[2]) / 2, (tray[1] + tray[3]) / 2))
    if turn.degrees:  # a turned tray may reach past the photo's edges; so may its cells
        corners = turn.polygon(tray[0], tray[1], tray[2] - 1, tray[3] - 1)
        cv2.fillConvexPoly(canvas, corners, tray_colour.tolist(), cv2.LINE_AA)
        cv2.polylines(canvas, [corners], True, (tray_colour * 1.6).tolist(), rim, cv2.LINE_AA)
    else:
        cv2.rectangle(canvas, tray[:2], (tray[2] - 1, tray[3] - 1), tray_colour.tolist(), -1)
        rim_colour = (tray_colour * 1.6).tolist()
        cv2.rectangle(canvas, tray[:2], (tray[2] - 1, tray[3] - 1), rim_colour, rim)

    pitch = float(rng.uniform(110.0, 200.0)) * conditions.scale
    wall = max(2, int(pitch * rng.uniform(0.05, 0.1)))
    cols = max(1, int((tray[2] - tray[0] - rim) // pitch))
    rows = max(1, int((tray[3] - tray[1] - rim) // pitch))
    x0 = tray[0] + (tray[2] - tray[0] - cols * pitch) / 2
    y0 = tray[1] + (tray[3] - tray[1] - rows * pitch) / 2

    cell_mask = np.zeros((height, width), np.uint8)
    cells: list[tuple[float, float]] = []
    for r in range(rows):
        for c in range(cols):
            left, top = x0 + c * pitch, y0 + r * pitch
            p1 = (int(left + wall / 2), int(top + wall / 2))
            p2 = (int(left + pitch - wall / 2), int(top + pitch - wall / 2))
            if turn.degrees:
                cv2.fillConvexPoly(cell_mask, turn.polygon(*p1, *p2), 255, cv2.LINE_AA)
                cells.append(turn.point(left + pitch / 2, top + pitch / 2))
            else:
                cv2.rectangle(cell_mask, p1, p2, 255, -1, cv2.LINE_AA)
                cells.append((left + pitch / 2, top + pitch / 2))

    red = rng.uniform(55, 115)  # soil is brown: green and blue follow red
    soil_colour = red * np.array([1.0, rng.uniform(0.68, 0.78), rng.uniform(0.48, 0.58)])
    soil = np.empty_like(canvas)
    soil[:] = soil_colour
    grain = _noise(rng, height, width, scale=48, amplitude=14.0)
    grain += rng.normal(0.0, 9.0, (height, width)).astype(np.float32)
    soil += grain[..., None]
    alpha = (cell_mask.astype(np.float32) / 255.0)[..., None]
    canvas *= 1.0 - alpha
    canvas += soil * alpha
    return canvas, cells, pitch


@dataclass(frozen=True, slots=True)
class _Turn:
    """A rotation by `degrees` about `centre`, in image coordinates."""

    degrees: float
    centre: tuple[float, float]

    def point(self, x: float, y: float) -> tuple[float, float]:
        rad = math.radians(self.degrees)
        dx, dy = x - self.centre[0], y - self.centre[1]
        return (
            self.centre[0] + dx * math.cos(rad) - dy * math.sin(rad),
            self.centre[1] + dx * math.sin(rad) + dy * math.cos(rad),
        )

    def polygon(self, x1: float, y1: float, x2: float, y2: float) -> NDArray[np.int32]:
        """The turned rectangle (x1, y1)–(x2, y2) as a polygon for cv2."""
        corners = [self.point(x, y) for x, y in ((x1, y1), (x2, y1), (x2, y2), (x1, y2))]
        return np.round(np.array(corners)).astype(np.int32)


def _noise(
    rng: np.random.Generator, height: int, width: int, scale: int, amplitude: float
) -> FloatImage:
    """Smooth value noise: random values on a coarse grid, upsampled bicubically."""
    coarse = rng.normal(0.0, amplitude, (height // scale + 2, width // scale + 2)).astype(
        np.float32
    )
    return np.asarray(
        cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC), np.float32
    )


def _leaf_colour(rng: np.random.Generator, hue: tuple[float, float]) -> NDArray[np.float64]:
    hsv = np.array([[[rng.uniform(*hue), rng.uniform(110, 230), rng.uniform(110, 220)]]], np.uint8)
    rgb = np.asarray(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), np.float64)
    return rgb.reshape(3)


def _seedling(rng: np.random.Generator, diameter: float) -> tuple[FloatImage, FloatImage]:
    """A rosette of 2–6 leaves on a transparent patch: (colour, coverage)."""
    leaves = 2 if diameter < 40 else int(rng.integers(2, 7))
    base = _leaf_colour(rng, (36.0, 52.0))
    angle0 = rng.uniform(0, 360)
    specs = []
    for i in range(leaves):
        length = diameter / 2 * rng.uniform(0.75, 1.0)
        specs.append(
            (
                angle0 + i * 360 / leaves + rng.uniform(-20, 20),
                length,
                length * rng.uniform(0.35, 0.65),
                np.clip(base * rng.uniform(0.85, 1.15), 0, 255),
            )
        )
    return _draw_leaves(diameter, specs, midrib=True)


def _weed(rng: np.random.Generator, diameter: float) -> tuple[FloatImage, FloatImage]:
    """A weed: many narrow blades (grass) or a yellower rosette of lobed narrow leaves."""
    grass = rng.random() < 0.5
    base = _leaf_colour(rng, (25.0, 34.0) if not grass else (40.0, 60.0))
    if grass:
        base *= 0.7  # grasses here are darker than the crop
    blades = int(rng.integers(4, 9))
    angle0 = rng.uniform(0, 360)
    specs = []
    for i in range(blades):
        length = diameter / 2 * rng.uniform(0.6, 1.0)
        width_ratio = rng.uniform(0.08, 0.16) if grass else rng.uniform(0.18, 0.28)
        spread = 360 / blades if not grass else rng.uniform(20, 70)
        specs.append(
            (
                angle0 + i * spread + rng.uniform(-15, 15),
                length,
                length * width_ratio,
                np.clip(base * rng.uniform(0.85, 1.15), 0, 255),
            )
        )
    return _draw_leaves(diameter, specs, midrib=False)


def _draw_leaves(
    diameter: float,
    specs: list[tuple[float, float, float, NDArray[np.float64]]],
    *,
    midrib: bool,
) -> tuple[FloatImage, FloatImage]:
    """Draw ellipse leaves radiating from the patch centre, at 4× resolution then downsampled."""
    ss = 4  # supersampling gives smooth, exact-coverage edges
    size = math.ceil(diameter * 1.1) + 4
    big = size * ss
    colour = np.zeros((big, big, 3), np.float32)
    cover = np.zeros((big, big), np.float32)
    centre = big / 2
    for angle, length, width, rgb in specs:
        rad = math.radians(angle)
        cx = centre + math.cos(rad) * length / 2 * ss
        cy = centre + math.sin(rad) * length / 2 * ss
        axes = (max(1, int(length / 2 * ss)), max(1, int(width / 2 * ss)))
        cv2.ellipse(colour, (int(cx), int(cy)), axes, angle, 0, 360, rgb.tolist(), -1)
        cv2.ellipse(cover, (int(cx), int(cy)), axes, angle, 0, 360, 1.0, -1)
        if midrib:  # stays inside the leaf: the ellipse spans centre..length along its axis
            tip = (
                int(centre + math.cos(rad) * length * 0.85 * ss),
                int(centre + math.sin(rad) * length * 0.85 * ss),
            )
            cv2.line(colour, (int(centre), int(centre)), tip, (rgb * 0.8).tolist(), max(1, ss // 2))
    colour = np.asarray(cv2.resize(colour, (size, size), interpolation=cv2.INTER_AREA), np.float32)
    cover = np.asarray(cv2.resize(cover, (size, size), interpolation=cv2.INTER_AREA), np.float32)
    # Un-premultiply so that edge pixels keep the leaf's colour, not a darkened one.
    colour /= np.maximum(cover, 1e-3)[..., None]
    return colour, cover


def _paste(
    canvas: FloatImage, colour: FloatImage, cover: FloatImage, x: float, y: float
) -> tuple[int, int, int, int] | None:
    """Composite a patch centred on (x, y) with a soft shadow; return its visible box."""
    height, width = canvas.shape[:2]
    size = cover.shape[0]
    left, top = round(x - size / 2), round(y - size / 2)
    x1, y1 = max(left, 0), max(top, 0)
    x2, y2 = min(left + size, width), min(top + size, height)
    if x2 - x1 < 2 or y2 - y1 < 2:
        return None
    px1, py1 = x1 - left, y1 - top
    patch_cover = cover[py1 : py1 + y2 - y1, px1 : px1 + x2 - x1]
    solid = np.argwhere(patch_cover >= _COVERAGE_THRESHOLD)
    if len(solid) == 0:
        return None
    region = canvas[y1:y2, x1:x2]

    shadow = cv2.GaussianBlur(patch_cover, (0, 0), sigmaX=max(1.0, size / 30))
    shadow = np.roll(shadow, (max(1, size // 25), max(1, size // 25)), axis=(0, 1))
    region *= (1.0 - 0.35 * shadow)[..., None]

    a = patch_cover[..., None]
    region *= 1.0 - a
    region += colour[py1 : py1 + y2 - y1, px1 : px1 + x2 - x1] * a

    (ry1, rx1), (ry2, rx2) = solid.min(axis=0), solid.max(axis=0)
    return (int(x1 + rx1), int(y1 + ry1), int(x1 + rx2 + 1), int(y1 + ry2 + 1))


def _scatter_perlite(rng: np.random.Generator, canvas: FloatImage, scale: float) -> None:
    height, width = canvas.shape[:2]
    count = int(height * width * rng.uniform(2e-5, 1.2e-4))
    xs = rng.integers(0, width, count)
    ys = rng.integers(0, height, count)
    radii = rng.integers(1, 4, count)
    for x, y, r in zip(xs, ys, radii, strict=True):
        grey = float(rng.uniform(190, 245))
        radius = max(1, round(int(r) * scale))
        cv2.circle(canvas, (int(x), int(y)), radius, (grey, grey, grey * 0.97), -1, cv2.LINE_AA)


def _stone(rng: np.random.Generator, canvas: FloatImage, scale: float) -> None:
    height, width = canvas.shape[:2]
    centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
    axes = (int(rng.uniform(6, 30) * scale), int(rng.uniform(5, 22) * scale))
    grey = float(rng.uniform(90, 170))
    colour = (grey, grey * rng.uniform(0.95, 1.02), grey * rng.uniform(0.9, 1.0))
    cv2.ellipse(canvas, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)


def _plant_label(
    rng: np.random.Generator, canvas: FloatImage, x: float, y: float, scale: float
) -> None:
    """A white or yellow plastic plant label, seen slightly from above, with printed lines."""
    w, h = rng.uniform(14, 24) * scale, rng.uniform(50, 90) * scale
    angle = rng.uniform(-40, 40)
    box = cv2.boxPoints(((x, y), (w, h), angle)).astype(np.int32)
    paper = (245.0, 245.0, 240.0) if rng.random() < 0.6 else (240.0, 220.0, 90.0)
    cv2.fillConvexPoly(canvas, box, paper, cv2.LINE_AA)
    rad = math.radians(angle)
    for k in range(3):
        offset = (k - 1) * h / 5
        cx, cy = x - math.sin(rad) * offset, y + math.cos(rad) * offset
        dx, dy = math.cos(rad) * w * 0.3, math.sin(rad) * w * 0.3
        start, end = (int(cx - dx), int(cy - dy)), (int(cx + dx), int(cy + dy))
        cv2.line(canvas, start, end, (30.0, 30.0, 30.0), 2, cv2.LINE_AA)


# Channel gains of fully warm light (sodium lamps, low sun): red up, blue well down.
_WARM: Final = np.array([1.25, 1.02, 0.65], np.float32)


def _camera(rng: np.random.Generator, canvas: FloatImage, conditions: Conditions) -> Image:
    """Uneven light, white balance, exposure, lens blur and sensor noise."""
    height, width = canvas.shape[:2]
    ys = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None]
    xs = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
    gx, gy = rng.uniform(-0.25, 0.25, 2)
    vignette = float(rng.uniform(0.0, 0.3))
    gain = 1.0 + gx * xs + gy * ys - vignette * (xs * xs + ys * ys) / 2
    canvas *= (gain * float(rng.uniform(0.8, 1.2)))[..., None]
    canvas *= rng.uniform(0.92, 1.08, 3).astype(np.float32)
    if conditions.warmth:
        canvas *= 1.0 + conditions.warmth * (_WARM - 1.0)
    if conditions.light != 1.0:
        canvas *= conditions.light
    sigma = float(rng.uniform(0.0, 1.3))
    if conditions.blur is not None:
        sigma = conditions.blur
    if sigma > 0.3:
        canvas = np.asarray(cv2.GaussianBlur(canvas, (0, 0), sigmaX=sigma), np.float32)
    canvas += rng.normal(0.0, rng.uniform(1.0, 4.0), canvas.shape).astype(np.float32)
    return np.clip(canvas, 0, 255).astype(np.uint8)
