"""Box regression loss: GIoU, weighted per positive by its quality target (ATSS, GFL)."""

from __future__ import annotations

from torch import Tensor
from torchvision.ops import generalized_box_iou_loss


def weighted_giou_loss(pred_boxes: Tensor, target_boxes: Tensor, weights: Tensor) -> Tensor:
    """Sum over positives of weight * (1 - GIoU): [P, 4], [P, 4], [P] -> scalar.

    The criterion divides by the sum of the weights (ATSS normalises by the centerness targets).
    """
    return (generalized_box_iou_loss(pred_boxes, target_boxes, reduction="none") * weights).sum()
