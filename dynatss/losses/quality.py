"""The quality branch: its targets (centerness, PIoU at the positives or at every candidate) and its BCE loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dynatss.boxes import box_centers, elementwise_box_iou


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


def candidate_iou_targets(candidates: Tensor, pred_boxes: Tensor, gt_boxes: Tensor, gt_valid: Tensor,
                          positive_ious: Tensor, *, rejected: str = "iou") -> Tensor:
    """IoU-branch targets at every ATSS candidate (``loss.quality_targets=candidates*``, issue 17).

    candidates [B, G, K] anchor indices; pred_boxes [B, A, 4] (detached); gt_boxes [B, G, 4];
    gt_valid [B, G]; positive_ious [B, A]: the PIoU of each positive with its GT, -1 elsewhere.
    Returns [B, A]: a positive's own PIoU; for a candidate the assignment rejected, the best IoU of
    its predicted box with the GTs it is a candidate of (``rejected="iou"``) or 0 (``"zero"``, as
    GFL's joint score and VFNet's IoU-aware score train every negative); -1 for anchors that are no
    GT's candidate (not trained). Trained at the positives alone, the branch is free to score a
    neighbour's box that misses as high as a positive's.
    """
    batch_index = torch.arange(candidates.shape[0], device=candidates.device).view(-1, 1, 1)
    ious = elementwise_box_iou(pred_boxes[batch_index, candidates], gt_boxes.unsqueeze(2))  # [B, G, K]
    if rejected == "zero":
        ious = torch.zeros_like(ious)
    ious = ious.masked_fill(~gt_valid.unsqueeze(-1), -1.0)
    not_candidate = torch.full(pred_boxes.shape[:2], -1.0, device=pred_boxes.device, dtype=ious.dtype)
    best = not_candidate.scatter_reduce(1, candidates.flatten(1), ious.flatten(1), reduce="amax")  # [B, A]
    return torch.where(positive_ious >= 0, positive_ious.to(best.dtype), best)
