"""ATSS step 1: per pyramid level, the k anchors whose centres are nearest to each GT centre.

The anchors of a level lie on a regular grid (rows, columns, a few anchors per location), so the
k nearest to a point lie in a small window of rows and columns around it: the assigner looks at
that window instead of measuring the distance from every GT to every anchor. Memory therefore
grows with G x window, not G x A.

Why a window of ``k_loc + 1`` rows and ``k_loc + 1`` columns (k_loc = k / anchors per location) is
enough: along one axis at most two grid lines are equidistant from a point, so for any column
outside the window at least ``k_loc`` window columns are strictly closer; the point in the same
row of each of those columns is then strictly closer too. An anchor outside the window thus has
at least k strictly closer anchors and can never be among the k nearest, whatever the tie-break.
Ties inside the window are broken by anchor index, as a stable sort over the level would.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch import Tensor

from dynatss.boxes import box_centers

# Pixels: anchor centres closer than this are the same grid location.
_CENTER_TOLERANCE = 1e-3


@dataclass(frozen=True)
class LevelGrid:
    """Layout of one level's anchors: index = start + anchor + per_location * (x + width * y)."""

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


def infer_level_grid(level_anchors: Tensor, start: int) -> LevelGrid | None:
    """Recover the grid of one level from its anchors [A_l, 4], or None if they are not a grid."""
    count = level_anchors.shape[0]
    if count == 0:
        return None
    centers = box_centers(level_anchors).double()  # [A_l, 2]
    # Anchors of several sizes at one location can have centres that differ by rounding only.
    same_as_first = ((centers - centers[0]).abs() <= _CENTER_TOLERANCE).all(dim=1)
    per_location = int(same_as_first.int().cumprod(0).sum())
    if count % per_location:
        return None
    location_centers = centers[::per_location]  # [H*W, 2]
    same_row = (location_centers[:, 1] - location_centers[0, 1]).abs() <= _CENTER_TOLERANCE
    width = int(same_row.int().cumprod(0).sum())
    if (count // per_location) % width:
        return None
    height = count // per_location // width
    origin_x, origin_y = location_centers[0].tolist()
    stride_x = (location_centers[1, 0] - origin_x).item() if width > 1 else 1.0
    stride_y = (location_centers[width, 1] - origin_y).item() if height > 1 else 1.0
    grid = LevelGrid(start, height, width, per_location, origin_x, origin_y, stride_x, stride_y)
    expected = _grid_centers(grid, centers.device)  # [A_l, 2]
    if stride_x <= 0 or stride_y <= 0 or not torch.allclose(expected, centers, rtol=0, atol=_CENTER_TOLERANCE):
        return None
    return grid


def _grid_centers(grid: LevelGrid, device: torch.device) -> Tensor:
    ys = torch.arange(grid.height, device=device, dtype=torch.float64) * grid.stride_y + grid.origin_y
    xs = torch.arange(grid.width, device=device, dtype=torch.float64) * grid.stride_x + grid.origin_x
    cy, cx = torch.meshgrid(ys, xs, indexing="ij")
    centers = torch.stack([cx, cy], dim=-1).reshape(-1, 1, 2)
    return centers.expand(-1, grid.per_location, 2).reshape(-1, 2)


def _nearest_lines(position: Tensor, origin: float, stride: float, lines: int, size: int) -> Tensor:
    """Indices of the ``size`` grid lines nearest to ``position`` [B, G] -> [B, G, size]."""
    continuous = (position - origin) / stride
    first = torch.floor(continuous - size / 2 + 1).clamp(0, lines - size).long()
    return first.unsqueeze(-1) + torch.arange(size, device=position.device)


def window_indices(grid: LevelGrid, gt_centers: Tensor, topk: int) -> Tensor:
    """Anchor indices of the window around each GT centre: [B, G, 2] -> [B, G, W] (increasing)."""
    lines_per_axis = topk + 1
    rows = _nearest_lines(gt_centers[..., 1], grid.origin_y, grid.stride_y, grid.height,
                          min(lines_per_axis, grid.height))  # [B, G, Wy]
    cols = _nearest_lines(gt_centers[..., 0], grid.origin_x, grid.stride_x, grid.width,
                          min(lines_per_axis, grid.width))  # [B, G, Wx]
    locations = rows.unsqueeze(-1) * grid.width + cols.unsqueeze(-2)  # [B, G, Wy, Wx]
    anchor_offsets = torch.arange(grid.per_location, device=gt_centers.device)
    indices = locations.unsqueeze(-1) * grid.per_location + anchor_offsets  # [B, G, Wy, Wx, P]
    return indices.flatten(2) + grid.start


# Grids inferred per anchors tensor: the model hands the same cached anchors every iteration.
_GRID_CACHE: dict[int, tuple[weakref.ref, int, tuple[int, ...], list[LevelGrid | None]]] = {}


def level_grids(anchors: Tensor, num_anchors_per_level: list[int]) -> list[LevelGrid | None]:
    """The grid of every level (None where the anchors are not a grid), cached per tensor."""
    key = id(anchors)
    counts = tuple(num_anchors_per_level)
    cached = _GRID_CACHE.get(key)
    if cached and cached[0]() is anchors and cached[1] == anchors._version and cached[2] == counts:
        return cached[3]
    starts = [sum(counts[:level]) for level in range(len(counts))]
    grids = [infer_level_grid(anchors[start : start + count], start) for start, count in zip(starts, counts)]
    for stale in [k for k, v in _GRID_CACHE.items() if v[0]() is None]:
        del _GRID_CACHE[stale]
    _GRID_CACHE[key] = (weakref.ref(anchors), anchors._version, counts, grids)
    return grids


def _stable_smallest(distances: Tensor, k: int) -> Tensor:
    """Positions of the k smallest of ``distances`` [..., W] (>= 0), ties to the lower position.

    Exactly what a stable sort gives, but with top-k: the float's bits (monotonic for
    non-negative floats) and the position are packed into one int64 key, so all keys differ.
    """
    if distances.dtype != torch.float32:  # float64 bits do not fit beside the position
        return distances.sort(dim=-1, stable=True).indices[..., :k]
    bits = distances.view(torch.int32).long()  # [..., W]
    positions = torch.arange(distances.shape[-1], device=distances.device)
    keys = bits * distances.shape[-1] + positions
    return keys.topk(k, dim=-1, largest=False, sorted=True).indices


def select_candidates(
    anchors: Tensor, num_anchors_per_level: list[int], gt_boxes: Tensor, topk: int
) -> Tensor:
    """Indices of the ATSS candidates of every GT: [B, G, K], K = sum over levels of k_l.

    Per level, k_l = min(topk x anchors per location, anchors in the level), as the official ATSS
    code; nearest means smallest squared centre distance, ties going to the lower anchor index.
    """
    anchor_centers = box_centers(anchors)  # [A, 2]
    gt_centers = box_centers(gt_boxes)  # [B, G, 2]
    candidates = []
    start = 0
    for count, grid in zip(num_anchors_per_level, level_grids(anchors, num_anchors_per_level)):
        if grid is None:  # not a regular grid: every anchor of the level is a window member
            window = torch.arange(start, start + count, device=anchors.device)
            window = window.expand(*gt_boxes.shape[:2], count)
            per_location = 1
        else:
            window = window_indices(grid, gt_centers, topk)  # [B, G, W]
            per_location = grid.per_location
        offsets = anchor_centers[window] - gt_centers.unsqueeze(2)  # [B, G, W, 2]
        distances = offsets[..., 0].square() + offsets[..., 1].square()  # [B, G, W]
        k = min(topk * per_location, count)
        order = _stable_smallest(distances, k)  # [B, G, k]
        candidates.append(window.gather(-1, order))
        start += count
    return torch.cat(candidates, dim=-1)
