"""Element-wise box maths that torchvision.ops does not provide (its IoU ops are pairwise).

All boxes are xyxy. Shapes broadcast: ``[..., 4]`` with ``[..., 4]`` gives ``[...]``.
"""

from __future__ import annotations

from torch import Tensor

# Keeps IoU finite when both boxes are degenerate (zero union); the IoU is then 0.
_EPS = 1e-9


def box_area(boxes: Tensor) -> Tensor:
    """[..., 4] -> [...]; degenerate boxes have area 0, never negative."""
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)


def elementwise_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of corresponding boxes: [..., 4], [..., 4] -> [...]."""
    top_left = boxes1[..., :2].maximum(boxes2[..., :2])
    bottom_right = boxes1[..., 2:].minimum(boxes2[..., 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(boxes1) + box_area(boxes2) - inter
    return inter / union.clamp(min=_EPS)


def elementwise_box_iof(boxes: Tensor, regions: Tensor) -> Tensor:
    """Intersection over the area of ``boxes`` (how much of each box lies inside its region)."""
    top_left = boxes[..., :2].maximum(regions[..., :2])
    bottom_right = boxes[..., 2:].minimum(regions[..., 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    return wh[..., 0] * wh[..., 1] / box_area(boxes).clamp(min=_EPS)


def box_centers(boxes: Tensor) -> Tensor:
    """[..., 4] -> [..., 2] (cx, cy)."""
    return (boxes[..., :2] + boxes[..., 2:]) / 2
