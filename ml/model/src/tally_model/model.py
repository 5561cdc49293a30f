"""TallyNet: a small anchor-free detector (one stride-8 level, FCOS-style box distances).

The exported graph takes uint8 RGB batches `(B, H, W, 3)` (H and W multiples of 32) and returns
YOLO-style rows `(B, N, 4 + classes)`: a box `x1, y1, x2, y2` in input pixels and one sigmoid score
per class for each of the N = H/8 · W/8 grid cells, so the usual threshold-and-NMS applies.
"""

from __future__ import annotations

from typing import Final

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from tally_inference import LABELS

STRIDE: Final = 8


def _conv(cin: int, cout: int, k: int = 3, s: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, s, k // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.SiLU(inplace=True),
    )


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(channels, channels, 1), _conv(channels, channels, 3))

    def forward(self, x: Tensor) -> Tensor:
        residual: Tensor = self.body(x)
        return x + residual


class TallyNet(nn.Module):
    def __init__(self, num_classes: int = len(LABELS), width: int = 64) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stem = nn.Sequential(_conv(3, 16, 3, 2), _conv(16, 32, 3, 2), _Residual(32))
        self.c8 = nn.Sequential(_conv(32, 48, 3, 2), _Residual(48), _Residual(48))
        self.c16 = nn.Sequential(_conv(48, 80, 3, 2), _Residual(80), _Residual(80))
        self.c32 = nn.Sequential(_conv(80, 112, 3, 2), _Residual(112))
        self.lat32 = _conv(112, width, 1)
        self.lat16 = _conv(80, width, 1)
        self.lat8 = _conv(48, width, 1)
        self.fuse16 = _conv(width, width, 3)
        self.fuse8 = _conv(width, width, 3)
        self.head = _conv(width, width, 3)
        self.cls = nn.Conv2d(width, num_classes, 1)
        self.box = nn.Conv2d(width, 4, 1)
        # Start with every cell saying "background" at ~1 %, as focal-loss detectors do.
        assert self.cls.bias is not None
        assert self.box.bias is not None
        nn.init.constant_(self.cls.bias, -4.6)
        nn.init.zeros_(self.box.weight)
        nn.init.constant_(self.box.bias, 1.0)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Float images (B, 3, H, W) in [0, 1] → class logits (B, C, h, w), distances (B, 4, h, w).

        Distances are left, top, right, bottom from the cell centre, in input pixels.
        """
        c8 = self.c8(self.stem(x))
        c16 = self.c16(c8)
        c32 = self.c32(c16)
        p16 = self.fuse16(self.lat16(c16) + F.interpolate(self.lat32(c32), scale_factor=2.0))
        p8 = self.fuse8(self.lat8(c8) + F.interpolate(p16, scale_factor=2.0))
        feat = self.head(p8)
        distances = F.softplus(self.box(feat)) * STRIDE * 2
        return self.cls(feat), distances


def grid_centres(height: int, width: int, device: torch.device | None = None) -> Tensor:
    """Centres (h·w, 2) of the stride-8 cells of an (H, W) input, row-major."""
    ys = (torch.arange(height // STRIDE, device=device, dtype=torch.float32) + 0.5) * STRIDE
    xs = (torch.arange(width // STRIDE, device=device, dtype=torch.float32) + 0.5) * STRIDE
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)


def decode(logits: Tensor, distances: Tensor) -> Tensor:
    """Raw head outputs → YOLO-style rows (B, N, 4 + C) with boxes in input pixels."""
    h, w = logits.shape[2:]
    centres = grid_centres(h * STRIDE, w * STRIDE, logits.device)
    d = distances.flatten(2).transpose(1, 2)  # (B, N, 4)
    boxes = torch.cat([centres - d[..., :2], centres + d[..., 2:]], dim=-1)
    scores = logits.sigmoid().flatten(2).transpose(1, 2)
    return torch.cat([boxes, scores], dim=-1)


class ExportWrapper(nn.Module):
    """What goes into the ONNX file: uint8 NHWC in, decoded rows out (preprocessing inside)."""

    def __init__(self, net: TallyNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: Tensor) -> Tensor:
        x = images.permute(0, 3, 1, 2).float() / 255.0
        return decode(*self.net(x))
