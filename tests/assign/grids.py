"""Anchor grids and ground-truth cases for assigner tests, built independently of dynatss.model."""

from __future__ import annotations

import math

import torch
from torchvision.ops import box_iou

from dynatss.model.anchors import LevelGrid


def make_anchors(height: int, width: int, strides, scales=(8.0,), dtype=torch.float64):
    """Square anchors of size scale x stride centred at ((x + 0.5) s, (y + 0.5) s), per level."""
    levels = []
    for stride in strides:
        rows, cols = math.ceil(height / stride), math.ceil(width / stride)
        ys, xs = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
        centers = torch.stack([(xs + 0.5) * stride, (ys + 0.5) * stride], -1).reshape(-1, 1, 2)
        sizes = torch.tensor([scale * stride for scale in scales]).view(1, -1, 1)
        boxes = torch.cat([centers - sizes / 2, centers + sizes / 2], dim=-1).reshape(-1, 4)
        levels.append(boxes.to(dtype))
    return torch.cat(levels), [len(level) for level in levels]


def make_grids(height: int, width: int, strides, scales=(8.0,)) -> list[LevelGrid]:
    """The level grids of :func:`make_anchors`' layout, as the anchor generator would describe them."""
    grids, start = [], 0
    for stride in strides:
        grid = LevelGrid(start, math.ceil(height / stride), math.ceil(width / stride), len(scales),
                         stride / 2, stride / 2, float(stride), float(stride))
        grids.append(grid)
        start += grid.count
    return grids


def random_boxes(generator, count, height, width, kind):
    """GT boxes of several kinds: ordinary, tiny (< finest stride), crossing the border, zero-size."""
    cx = torch.rand(count, generator=generator, dtype=torch.float64) * width
    cy = torch.rand(count, generator=generator, dtype=torch.float64) * height
    if kind == "tiny":
        w = torch.rand(count, generator=generator, dtype=torch.float64) * 6
        h = torch.rand(count, generator=generator, dtype=torch.float64) * 6
    else:
        w = torch.rand(count, generator=generator, dtype=torch.float64) * width * 0.9 + 1
        h = torch.rand(count, generator=generator, dtype=torch.float64) * height * 0.9 + 1
    if kind == "border":  # centres near or beyond the image edge
        cx = cx * 1.4 - 0.2 * width
        cy = cy * 1.4 - 0.2 * height
    if kind == "degenerate":
        w = w * (torch.rand(count, generator=generator) < 0.5)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def well_regressed_case():
    """3 images of up to 15 GTs on P3-P5 anchors (4 x stride) where each anchor predicts the GT it
    overlaps most, a few pixels off: every level regresses well, so combined IoUs differ from ATSS."""
    anchors, counts = make_anchors(160, 160, strides=(8, 16, 32), scales=(4.0,))
    generator = torch.Generator().manual_seed(1)
    gt = random_boxes(generator, 3 * 15, 160, 160, "normal").view(3, 15, 4)
    valid = torch.rand(3, 15, generator=generator) < 0.7
    best_gt = torch.stack([box_iou(anchors, gt[b]).argmax(dim=1) for b in range(3)])  # [B, A]
    preds = gt[torch.arange(3).view(3, 1), best_gt] + torch.randn(3, len(anchors), 4, generator=generator,
                                                                  dtype=torch.float64) * 4
    return anchors, counts, gt, valid, preds
