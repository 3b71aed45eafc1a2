"""Anchor grids for assigner tests, built independently of dynatss.model."""

from __future__ import annotations

import math

import torch

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
