"""The training loop: fixed seeds, crops from generated photos, AdamW with a cosine schedule."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from tally_inference import LABELS, ImageEval, average_precision, decode_slice
from tally_model.data import Crop, Photo, make_photos, random_crop
from tally_model.loss import assign, detection_loss
from tally_model.model import TallyNet, decode

WEED = LABELS.index("weed")


@dataclass(frozen=True, slots=True)
class TrainConfig:
    seed: int = 7
    photos: int = 96
    photo_width: int = 2048
    photo_height: int = 1536
    crop: int = 320
    batch: int = 24
    steps: int = 3000
    lr: float = 3e-3
    warmup: int = 60
    val_photos: int = 4
    val_crops: int = 48
    val_crop: int = 512
    threads: int = 2
    log_every: int = 50
    focus_weed: float = 0.25  # share of crops centred on a weed
    condition: str = "mixed"  # tally-synth condition of the training and validation photos
    zoom: float = 1.25  # half the crops are resized by a factor in 1/zoom..zoom


@dataclass(slots=True)
class TrainResult:
    model: TallyNet
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def _batch(
    crops: list[Crop],
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    images = torch.from_numpy(np.stack([c.image for c in crops])).permute(0, 3, 1, 2)
    return (
        images.float().div_(255.0),
        [torch.from_numpy(c.boxes) for c in crops],
        [torch.from_numpy(c.labels) for c in crops],
        [torch.from_numpy(c.ignore) for c in crops],
    )


def train(config: TrainConfig, log: Callable[[str], None] = print) -> TrainResult:
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)

    log(f"generating {config.photos} training photos ({config.photo_width}x{config.photo_height})")
    size = (config.photo_width, config.photo_height)
    photos = make_photos(config.seed, config.photos, *size, condition=config.condition)
    val = make_photos(config.seed + 1_000_003, config.val_photos, *size, condition=config.condition)
    objects = sum(len(p.boxes) for p in photos)
    log(f"{objects} training objects; generation took {time.perf_counter() - started:.0f} s")

    model = TallyNet()
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=5e-4)

    def lr_at(step: int) -> float:
        if step < config.warmup:
            return config.lr * (step + 1) / config.warmup
        progress = (step - config.warmup) / max(1, config.steps - config.warmup)
        return config.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))

    model.train()
    running: dict[str, float] = {}
    for step in range(config.steps):
        for group in optimiser.param_groups:
            group["lr"] = lr_at(step)
        crops = [
            random_crop(
                photos[int(rng.integers(len(photos)))],
                config.crop,
                rng,
                focus_label=WEED if rng.random() < config.focus_weed else None,
                zoom=config.zoom,
            )
            for _ in range(config.batch)
        ]
        images, boxes, labels, ignore = _batch(crops)
        logits, distances = model(images)
        targets = assign(boxes, labels, ignore, config.crop, config.crop)
        loss, parts = detection_loss(logits, distances, targets)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimiser.step()
        for key, value in {"loss": loss.item(), **parts}.items():
            running[key] = running.get(key, 0.0) + value
        if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
            n = (step % config.log_every) + 1
            summary = " ".join(f"{k}={v / n:.4f}" for k, v in running.items())
            log(
                f"step {step + 1}/{config.steps} lr={lr_at(step):.5f} {summary} "
                f"({time.perf_counter() - started:.0f} s)"
            )
            running = {}

    metrics = validate(model, val, config)
    log("validation on held-out crops: " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return TrainResult(model, metrics, time.perf_counter() - started)


@torch.no_grad()
def validate(model: TallyNet, photos: list[Photo], config: TrainConfig) -> dict[str, float]:
    """AP@0.5 per class on fixed random crops of held-out photos."""
    model.eval()
    rng = np.random.default_rng(config.seed + 1)
    crops = [
        random_crop(photos[i % len(photos)], config.val_crop, rng) for i in range(config.val_crops)
    ]
    per_class: dict[int, list[ImageEval]] = {k: [] for k in range(len(LABELS))}
    for start in range(0, len(crops), 8):
        chunk = crops[start : start + 8]
        images, *_ = _batch(chunk)
        rows = decode(*model(images)).numpy()
        for crop, out in zip(chunk, rows, strict=True):
            found = decode_slice(out, score_threshold=0.05, iou_threshold=0.5)
            for k in per_class:
                per_class[k].append(
                    ImageEval(
                        found.boxes[found.classes == k],
                        found.scores[found.classes == k],
                        crop.boxes[crop.labels == k],
                    )
                )
    model.train()
    return {f"AP50_{LABELS[k]}": average_precision(v) for k, v in per_class.items()}
