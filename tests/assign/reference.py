"""A slow, obviously-correct ATSS / Dynamic ATSS: one image, one GT, one anchor at a time.

Written from the paper's description with no code shared with dynatss.assign (IoUs come from
torchvision.ops.box_iou against the full anchor set), so that the batched assigner can be checked
against it.
"""

from __future__ import annotations

import torch
from torchvision.ops import box_iou


def _mean_plus_std(values: torch.Tensor) -> torch.Tensor:
    """In the values' own dtype: a candidate whose IoU equals the threshold must compare equal."""
    if len(values) < 2:
        return values.mean() if len(values) else values.new_zeros(())
    return values.mean() + values.std()


def reference_assign(
    anchors, num_anchors_per_level, anchors_per_location, gt_boxes, gt_valid, pred_boxes,
    topk, pred_weight, anchor_weight, levels="all", max_positives="threshold",
):
    batch, num_gts = gt_valid.shape
    num_anchors = anchors.shape[0]
    dtype = anchors.dtype
    if pred_boxes is None:
        pred_weight = 0.0
    gt_index = torch.full((batch, num_anchors), -1, dtype=torch.long)
    anchor_ious_out = torch.zeros(batch, num_anchors, dtype=dtype)
    pred_ious_out = torch.zeros(batch, num_anchors, dtype=dtype)
    thresholds = torch.zeros(batch, num_gts, dtype=dtype)
    centers = (anchors[:, :2] + anchors[:, 2:]) / 2
    for b in range(batch):
        best = [float("-inf")] * num_anchors
        all_anchor_ious = box_iou(anchors, gt_boxes[b])  # [A, G]
        all_pred_ious = box_iou(pred_boxes[b], gt_boxes[b]) if pred_boxes is not None else None
        for g in range(num_gts):
            if not gt_valid[b, g]:
                continue
            box = gt_boxes[b, g]
            gt_center = (box[:2] + box[2:]) / 2
            candidates, candidate_level = [], []
            start = 0
            for level, count in enumerate(num_anchors_per_level):
                distances = (centers[start : start + count] - gt_center).square().sum(-1)
                order = torch.argsort(distances, stable=True)
                k = min(topk * anchors_per_location, count)
                candidates += [start + int(i) for i in order[:k]]
                candidate_level += [level] * k
                start += count
            candidates = torch.tensor(candidates)
            anchor_ious = all_anchor_ious[candidates, g]
            if pred_boxes is None:
                pred_ious = torch.zeros_like(anchor_ious)
            else:
                pred_ious = all_pred_ious[candidates, g]
            combined = pred_weight * pred_ious + anchor_weight * anchor_ious
            threshold = anchor_weight * _mean_plus_std(anchor_ious)
            if pred_weight != 0:
                threshold += pred_weight * _mean_plus_std(pred_ious)
            thresholds[b, g] = threshold
            # levels="anchor": a level counts when one of its AIoUs reaches ATSS's own threshold
            # (or is the best AIoU of all, when none does).
            bar = min(float(_mean_plus_std(anchor_ious)), float(anchor_ious.max()))
            allowed = {candidate_level[i] for i in range(len(candidates)) if float(anchor_ious[i]) >= bar}
            x1, y1, x2, y2 = box.tolist()
            inside = [min(cx - x1, cy - y1, x2 - cx, y2 - cy) > 0.01 for cx, cy in centers[candidates].tolist()]
            passing = [
                i for i in range(len(candidates))
                if inside[i] and bool(combined[i] >= threshold)
                and (levels == "all" or candidate_level[i] in allowed)
            ]
            if max_positives == "atss":
                # At most as many as plain ATSS gives this GT (at least 1), the highest combined IoUs
                # first, ties to the earlier candidate.
                atss_count = sum(
                    1 for i in range(len(candidates)) if inside[i] and bool(anchor_ious[i] >= _mean_plus_std(anchor_ious))
                )
                passing = sorted(passing, key=lambda i: (-float(combined[i]), i))[: max(atss_count, 1)]
            for i in passing:
                a = int(candidates[i])
                value = float(combined[i])
                # Strictly greater: on equal combined IoU the lower GT index keeps the anchor.
                if value > best[a]:
                    best[a] = value
                    gt_index[b, a] = g
                    anchor_ious_out[b, a] = anchor_ious[i]
                    pred_ious_out[b, a] = pred_ious[i]
    return gt_index, anchor_ious_out, pred_ious_out, thresholds
