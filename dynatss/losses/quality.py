"""The quality branch: its targets (centerness or PIoU) and its BCE loss."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from dynatss.boxes import box_centers


def centerness_targets(anchors: Tensor, gt_boxes: Tensor) -> Tensor:
    """FCOS/ATSS centerness of each positive anchor centre in its GT: [P, 4], [P, 4] -> [P].

    sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)) with l, t, r, b the distances from the
    anchor centre to the GT sides; 1 at the GT centre, 0 on its border.
    """
    centers = box_centers(anchors)  # [P, 2]
    left_top = centers - gt_boxes[:, :2]  # [P, 2]
    right_bottom = gt_boxes[:, 2:] - centers  # [P, 2]
    ratio = left_top.minimum(right_bottom) / left_top.maximum(right_bottom).clamp(min=1e-6)
    return ratio.clamp(min=0).prod(dim=-1).sqrt()


def quality_loss(quality_logits: Tensor, targets: Tensor) -> Tensor:
    """Summed BCE of the quality logits [P] against their targets [P] in [0, 1]."""
    return F.binary_cross_entropy_with_logits(quality_logits, targets, reduction="sum")
