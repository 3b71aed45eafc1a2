"""Anchors: one box per feature-map location per (scale, ratio) pair, for every pyramid level.

Convention (document once, used everywhere): the anchor of cell (x, y) on a level of stride s is
centred at ((x + 0.5) * s, (y + 0.5) * s) in input pixels, i.e. at the centre of the s x s patch
of input pixels it covers. Its size is scale * s (ATSS: one square anchor of 8 * stride); a ratio
r = height / width gives width = size / sqrt(r), height = size * sqrt(r).

Order inside a level is (y, x, anchor) with anchors scale-major (for scale: for ratio:), which is
the order the head flattens its outputs in; levels are concatenated level-major.
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import Tensor, nn

# Anchor sets kept per (padded input size, feature sizes, device, dtype); multi-scale training
# with a fixed size divisibility only ever sees a handful of padded sizes.
_CACHE_SIZE = 16


@dataclass(frozen=True)
class LevelGrid:
    """Layout of one level's anchors, as the generator lays them out: anchor ``a`` (0 <= a <
    per_location) of cell (x, y) has index start + a + per_location * (x + width * y) and its centre
    at (origin_x + x * stride_x, origin_y + y * stride_y) in input pixels. The assigner uses it to
    look only at the anchors near each box (dynatss.assign.candidates)."""

    start: int
    height: int
    width: int
    per_location: int
    origin_x: float
    origin_y: float
    stride_x: float
    stride_y: float

    @property
    def count(self) -> int:
        return self.height * self.width * self.per_location


class AnchorGenerator(nn.Module):
    """Anchors for the pyramid levels of a padded input; cached per input size, device and dtype."""

    def __init__(self, *, strides: list[int], scales: list[float], ratios: list[float]) -> None:
        super().__init__()
        if not scales or not ratios:
            raise ValueError("anchor scales and ratios must be non-empty")
        self.strides = list(strides)
        self.pairs = list(itertools.product(scales, ratios))
        self._cache: OrderedDict[tuple, tuple[Tensor, list[int]]] = OrderedDict()

    @property
    def num_anchors_per_location(self) -> int:
        return len(self.pairs)

    def level_grids(self, feature_sizes: list[tuple[int, int]]) -> tuple[LevelGrid, ...]:
        """The grid of every level for feature maps of ``feature_sizes`` (h, w), finest first."""
        grids, start = [], 0
        for stride, (height, width) in zip(self.strides, feature_sizes):
            centre = 0.5 * stride
            grid = LevelGrid(start, int(height), int(width), len(self.pairs), centre, centre, float(stride), float(stride))
            grids.append(grid)
            start += grid.count
        return tuple(grids)

    def level_anchors(self, stride: int, height: int, width: int, device, dtype) -> Tensor:
        """Anchors of one level with a ``height`` x ``width`` feature map: [height * width * n, 4]."""
        sizes = []
        for scale, ratio in self.pairs:
            size = scale * stride
            sizes.append((size / math.sqrt(ratio), size * math.sqrt(ratio)))
        wh = torch.tensor(sizes, device=device, dtype=dtype)  # [n, 2]
        base = torch.cat((-0.5 * wh, 0.5 * wh), dim=1)  # [n, 4] centred at the origin
        ys = (torch.arange(height, device=device, dtype=dtype) + 0.5) * stride
        xs = (torch.arange(width, device=device, dtype=dtype) + 0.5) * stride
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # [height, width] each
        centres = torch.stack((grid_x, grid_y, grid_x, grid_y), dim=-1).reshape(-1, 1, 4)  # [HW, 1, 4]
        return (centres + base[None]).reshape(-1, 4)  # [HW * n, 4], order (y, x, anchor)

    def _compute(self, feature_sizes: list[tuple[int, int]], device, dtype) -> tuple[Tensor, list[int]]:
        per_level = [
            self.level_anchors(stride, h, w, device, dtype)
            for stride, (h, w) in zip(self.strides, feature_sizes)
        ]
        # shape[0], not len(): while tracing it is a traced size, so the count follows the input size.
        return torch.cat(per_level, dim=0), [a.shape[0] for a in per_level]

    def forward(
        self,
        image_size: tuple[int, int],
        feature_sizes: list[tuple[int, int]],
        device: torch.device,
        dtype: torch.dtype,
    ) -> tuple[Tensor, list[int]]:
        """Anchors [A, 4] xyxy in input pixels for all levels and the count per level.

        ``image_size`` is the padded input (H, W); ``feature_sizes`` the (h, w) of each level.
        """
        if len(feature_sizes) != len(self.strides):
            raise ValueError(f"expected {len(self.strides)} feature maps, got {len(feature_sizes)}")
        if torch.jit.is_tracing():  # ONNX export with a dynamic size: anchors follow the traced sizes
            return self._compute(feature_sizes, device, dtype)
        key = (tuple(image_size), tuple(feature_sizes), device, dtype)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        result = self._compute(feature_sizes, device, dtype)
        self._cache[key] = result
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return result
