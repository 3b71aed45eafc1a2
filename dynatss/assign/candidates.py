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

from collections.abc import Sequence

import torch
from torch import Tensor

from dynatss.boxes import box_centers
from dynatss.model.anchors import LevelGrid


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


def nearest_anchors(
    anchors: Tensor, num_anchors_per_level: list[int], gt_boxes: Tensor, topk: int,
    grids: Sequence[LevelGrid] | None = None,
) -> Tensor:
    """Indices of the ATSS candidates of every GT: [B, G, K], K = sum over levels of k_l.

    Per level, k_l = min(topk x anchors per location, anchors in the level), as the official ATSS
    code: the k anchors per location nearest to the GT centre, k x anchors per location in all;
    nearest means smallest squared centre distance, ties going to the lower anchor index.
    ``grids``: the layout of each level's anchors from the anchor generator; the search then looks
    at a window of the grid (memory G x window). Without them (anchors that are not a generator's
    grid, one per location) every anchor of a level is a window member, k_l = min(topk, A_l), and
    memory grows with G x A_l.
    """
    anchor_centers = box_centers(anchors)  # [A, 2]
    gt_centers = box_centers(gt_boxes)  # [B, G, 2]
    candidates = []
    start = 0
    for count, grid in zip(num_anchors_per_level, grids or [None] * len(num_anchors_per_level)):
        if grid is None:  # no grid: every anchor of the level is a window member
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
