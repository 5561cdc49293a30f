"""Target assignment (centre sampling, FCOS-style) and the detection loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

from tally_model.model import STRIDE, grid_centres

CENTRE_RADIUS = 1.5  # in cells: positives lie within this distance of the box centre


@dataclass(frozen=True, slots=True)
class Targets:
    classes: Tensor  # (B, N) long: class id, -1 background, -2 ignored
    boxes: Tensor  # (B, N, 4) target box of each positive cell


def assign(
    boxes: list[Tensor], labels: list[Tensor], ignore: list[Tensor], height: int, width: int
) -> Targets:
    centres = grid_centres(height, width)
    n = len(centres)
    all_classes, all_boxes = [], []
    for gt, lab, ign in zip(boxes, labels, ignore, strict=True):
        classes = torch.full((n,), -1, dtype=torch.long)
        target = torch.zeros((n, 4))
        if len(ign):
            inside_ignored = _inside(centres, ign).any(dim=1)
            classes[inside_ignored] = -2
        if len(gt):
            inside = _inside(centres, gt)
            gc = (gt[:, :2] + gt[:, 2:]) / 2
            near = ((centres[:, None, :] - gc[None]).abs() <= CENTRE_RADIUS * STRIDE).all(dim=2)
            candidate = inside & near
            # A box smaller than a cell may contain no centre: its nearest cell takes it.
            nearest = torch.cdist(gc, centres).argmin(dim=1)
            candidate[nearest, torch.arange(len(gt))] = True
            area = torch.prod(gt[:, 2:] - gt[:, :2], dim=1)
            cost = torch.where(candidate, area[None, :], torch.full_like(area[None, :], 1e12))
            best_cost, best = cost.min(dim=1)
            positive = best_cost < 1e12
            classes[positive] = lab[best[positive]]
            target[positive] = gt[best[positive]]
        all_classes.append(classes)
        all_boxes.append(target)
    return Targets(torch.stack(all_classes), torch.stack(all_boxes))


def _inside(points: Tensor, boxes: Tensor) -> Tensor:
    x, y = points[:, 0:1], points[:, 1:2]
    return (
        (x > boxes[None, :, 0])
        & (x < boxes[None, :, 2])
        & (y > boxes[None, :, 1])
        & (y < boxes[None, :, 3])
    )


def giou_loss(pred: Tensor, target: Tensor) -> Tensor:
    tl = torch.max(pred[:, :2], target[:, :2])
    br = torch.min(pred[:, 2:], target[:, 2:])
    inter = (br - tl).clamp(min=0).prod(dim=1)
    area_p = (pred[:, 2:] - pred[:, :2]).clamp(min=0).prod(dim=1)
    area_t = (target[:, 2:] - target[:, :2]).prod(dim=1)
    union = area_p + area_t - inter
    iou = inter / union.clamp(min=1e-6)
    hull = (torch.max(pred[:, 2:], target[:, 2:]) - torch.min(pred[:, :2], target[:, :2])).prod(1)
    return 1 - iou + (hull - union) / hull.clamp(min=1e-6)


def detection_loss(
    logits: Tensor, distances: Tensor, targets: Targets
) -> tuple[Tensor, dict[str, float]]:
    b, c, h, w = logits.shape
    logits = logits.flatten(2).transpose(1, 2)  # (B, N, C)
    distances = distances.flatten(2).transpose(1, 2)  # (B, N, 4)
    centres = grid_centres(h * STRIDE, w * STRIDE)
    pred_boxes = torch.cat([centres - distances[..., :2], centres + distances[..., 2:]], dim=-1)

    positive = targets.classes >= 0
    counted = targets.classes != -2
    num_pos = max(1.0, float(positive.sum()))
    onehot = torch.zeros_like(logits)
    onehot[positive] = F.one_hot(targets.classes[positive], c).float()
    focal = _sigmoid_focal(logits, onehot)[counted].sum() / num_pos
    box = giou_loss(pred_boxes[positive], targets.boxes[positive]).sum() / num_pos
    total = focal + 2.0 * box
    return total, {"cls": focal.item(), "box": box.item(), "pos": num_pos / b}


def _sigmoid_focal(
    logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> Tensor:
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    weight = alpha * targets + (1 - alpha) * (1 - targets)
    return weight * ce * (1 - p_t) ** gamma
