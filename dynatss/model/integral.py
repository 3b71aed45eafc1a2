"""Distance (ltrb) box parametrisation shared by the GFL and VFNet heads.

Both heads predict, per anchor, the distances (left, top, right, bottom) from the anchor centre
to the four sides of the box. GFL (Li et al.) predicts each distance as a discrete distribution
over the bins 0, 1, ..., reg_max in units of the level stride; the distance is its expectation
(the "integral"). VFNet predicts the distances directly in pixels.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dynatss.boxes import box_centers

# GFL: the distributions have reg_max + 1 bins, 0 .. reg_max strides (GFL / GFLV2 default 16).
DEFAULT_REG_MAX = 16


def edge_distributions(reg_distribution: Tensor, reg_max: int) -> Tensor:
    """Softmax of each edge's logits: [..., 4 * (reg_max + 1)] -> [..., 4, reg_max + 1]."""
    logits = reg_distribution.unflatten(-1, (4, reg_max + 1))
    return logits.softmax(dim=-1)


def integral(reg_distribution: Tensor, reg_max: int) -> Tensor:
    """Expected distance of each edge in bins (strides): [..., 4 * (reg_max + 1)] -> [..., 4].

    sum_i P(i) * i over the bins i = 0 .. reg_max (GFL Sec. 3.3), so in [0, reg_max].
    """
    probabilities = edge_distributions(reg_distribution, reg_max)  # [..., 4, n]
    bins = torch.arange(reg_max + 1, device=reg_distribution.device, dtype=probabilities.dtype)
    return probabilities @ bins  # [..., 4]


def logits_with_mean(mean: float, reg_max: int, *, width: float = 1.0) -> Tensor:
    """Logits [reg_max + 1] of a discretised Gaussian over the bins whose expectation is ``mean``.

    Used to start the GFL distributions at a chosen distance (``model.box_init``): the centre is
    moved until the truncated distribution's expectation equals ``mean`` (in bins, 0 < mean < reg_max).
    """
    if not 0.0 < mean < reg_max:
        raise ValueError(f"the initial distance must lie inside (0, {reg_max}) bins, got {mean}")
    bins = torch.arange(reg_max + 1, dtype=torch.float64)
    center = torch.tensor(float(mean), dtype=torch.float64)
    for _ in range(100):  # fixed point: the expectation grows with the centre, with slope <= 1
        logits = -0.5 * ((bins - center) / width) ** 2
        center = center + (mean - float(logits.softmax(dim=0) @ bins))
    return logits.float()


def anchor_strides(strides: list[int], num_anchors_per_level: list[int], like: Tensor) -> Tensor:
    """Stride of every anchor: [A] with the dtype and device of ``like``.

    Built level by level from the counts, so that while tracing for ONNX (counts are then traced
    sizes) the result follows the input size.
    """
    return torch.cat([like.new_full((count,), stride) for stride, count in zip(strides, num_anchors_per_level)])


def distances_to_boxes(anchors: Tensor, ltrb: Tensor) -> Tensor:
    """Boxes xyxy from distances to the anchor centres: [A, 4], [..., A, 4] pixels -> [..., A, 4]."""
    centers = box_centers(anchors)  # [A, 2]
    return torch.cat((centers - ltrb[..., :2], centers + ltrb[..., 2:]), dim=-1)


def boxes_to_distances(anchors: Tensor, boxes: Tensor) -> Tensor:
    """Distances (l, t, r, b) from the anchor centres to the box sides: [..., 4] -> [..., 4] pixels."""
    centers = box_centers(anchors)  # [..., 2]
    return torch.cat((centers - boxes[..., :2], boxes[..., 2:] - centers), dim=-1)
