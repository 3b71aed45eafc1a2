"""What ATSS and Dynamic ATSS do on one image, GT by GT: the numbers behind `dynatss assign`.

For every ground-truth box (GT) the trace holds its candidates (paper Sec. III.A step 1), their
AIoU, PIoU and combined IoU (step 2), the adaptive threshold (step 3) and which candidates end up
positive (steps 4-5), once under plain ATSS (AIoU alone) and once under the combined IoU of the
run's ``assign`` settings. Nothing is re-implemented: candidates and IoUs come from the assigner's
own steps (:func:`nearest_anchors`, :func:`candidate_ious`, :func:`centers_inside`), thresholds
and positives from :func:`atss_assign` itself, so the figure shows exactly what training does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dynatss.assign.atss import atss_assign, candidate_ious, candidate_levels, centers_inside
from dynatss.assign.candidates import nearest_anchors
from dynatss.model.anchors import LevelGrid

# Plain ATSS: the threshold and the ranking use the anchor IoU alone, with weight 1 (paper Eq. 1).
ATSS_ANCHOR_WEIGHT = 1.0


@dataclass(frozen=True)
class AssignmentTrace:
    """Both assignments of G GTs (one image), K candidates each; boxes in model-input pixels.

    candidates:  [G, K] anchor indices (per level, nearest centres first)
    levels:      [G, K] pyramid level (0 = finest) of each candidate
    anchor_ious / pred_ious / combined_ious: [G, K] AIoU, PIoU, w_p PIoU + w_a AIoU
    center_inside: [G, K] the candidate's anchor centre lies inside the GT (a positive must)
    atss_threshold / dynamic_threshold: [G] the adaptive thresholds (AIoU scale; combined scale)
    atss_positive / dynamic_positive: [G, K] the candidate's anchor is assigned to this GT (after
                 conflicts between GTs are resolved)
    """

    gt_boxes: Tensor
    anchors: Tensor
    pred_boxes: Tensor
    candidates: Tensor
    levels: Tensor
    anchor_ious: Tensor
    pred_ious: Tensor
    combined_ious: Tensor
    center_inside: Tensor
    atss_threshold: Tensor
    dynamic_threshold: Tensor
    atss_positive: Tensor
    dynamic_positive: Tensor
    pred_weight: float
    anchor_weight: float
    topk: int


def trace_assignment(
    anchors: Tensor,
    num_anchors_per_level: list[int],
    gt_boxes: Tensor,
    pred_boxes: Tensor,
    *,
    topk: int,
    pred_weight: float,
    anchor_weight: float,
    levels: str = "all",
    max_positives: str = "threshold",
    grids: list[LevelGrid] | tuple[LevelGrid, ...] | None = None,
) -> AssignmentTrace:
    """ATSS and combined-IoU assignment of ``gt_boxes`` [G, 4] given ``anchors`` [A, 4] and the
    predicted boxes [A, 4] of one image (``pred_weight``, ``anchor_weight``: w_p and w_a; ``levels``,
    ``max_positives``: the run's ``assign.levels`` and ``assign.max_positives``)."""
    gt = gt_boxes.unsqueeze(0).float()  # [1, G, 4]
    preds = pred_boxes.unsqueeze(0).float()  # [1, A, 4]
    valid = torch.ones(gt.shape[:2], dtype=torch.bool, device=gt.device)  # [1, G]
    candidates = nearest_anchors(anchors, num_anchors_per_level, gt, topk, grids)  # [1, G, K]
    anchor_ious, pred_ious = candidate_ious(anchors, preds, gt, candidates)  # [1, G, K] each
    atss = atss_assign(anchors, num_anchors_per_level, gt, valid, None, topk=topk,
                       anchor_weight=ATSS_ANCHOR_WEIGHT, grids=grids)
    dynamic = atss_assign(anchors, num_anchors_per_level, gt, valid, preds, topk=topk,
                          pred_weight=pred_weight, anchor_weight=anchor_weight, levels=levels,
                          max_positives=max_positives, grids=grids)
    gt_ids = torch.arange(gt.shape[1], device=gt.device).view(1, -1, 1)  # [1, G, 1]
    return AssignmentTrace(
        gt_boxes=gt_boxes.float(),
        anchors=anchors,
        pred_boxes=pred_boxes.float(),
        candidates=candidates[0],
        levels=candidate_levels(candidates[0], num_anchors_per_level),
        anchor_ious=anchor_ious[0],
        pred_ious=pred_ious[0],
        combined_ious=(pred_weight * pred_ious + anchor_weight * anchor_ious)[0],
        center_inside=centers_inside(anchors, gt, candidates)[0],
        atss_threshold=atss.threshold[0],
        dynamic_threshold=dynamic.threshold[0],
        atss_positive=(atss.gt_index.gather(1, candidates.flatten(1)).view_as(candidates) == gt_ids)[0],
        dynamic_positive=(dynamic.gt_index.gather(1, candidates.flatten(1)).view_as(candidates) == gt_ids)[0],
        pred_weight=pred_weight,
        anchor_weight=anchor_weight,
        topk=topk,
    )


def most_changed_gts(trace: AssignmentTrace, count: int) -> list[int]:
    """The ``count`` GTs whose positives differ most between ATSS and the combined IoU (larger GTs
    first among ties): where dynamic assignment visibly changes something."""
    changed = (trace.atss_positive ^ trace.dynamic_positive).sum(dim=1)  # [G]
    boxes = trace.gt_boxes
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])  # [G]
    order = sorted(range(len(changed)), key=lambda g: (-int(changed[g]), -float(areas[g]), g))
    return order[:count]


def trace_to_dict(trace: AssignmentTrace, *, class_names: list[str], scale: tuple[float, float]) -> list[dict]:
    """One JSON-ready dict per GT: its box (input and original pixels), both thresholds and
    positives, and every candidate's numbers. ``scale``: (x, y) original pixels per input pixel."""
    sx, sy = scale
    to_original = torch.tensor([sx, sy, sx, sy])
    gts = []
    for g, box in enumerate(trace.gt_boxes.cpu()):
        rows = [
            {"anchor": int(a), "level": int(lv), "aiou": _round(ai), "piou": _round(pi), "combined": _round(c),
             "center_inside": bool(ins), "atss_positive": bool(ap), "dynamic_positive": bool(dp)}
            for a, lv, ai, pi, c, ins, ap, dp in zip(
                trace.candidates[g].tolist(), trace.levels[g].tolist(), trace.anchor_ious[g].tolist(),
                trace.pred_ious[g].tolist(), trace.combined_ious[g].tolist(), trace.center_inside[g].tolist(),
                trace.atss_positive[g].tolist(), trace.dynamic_positive[g].tolist())
        ]
        gts.append({
            "index": g,
            "class_name": class_names[g],
            "box_input": [_round(v, 2) for v in box.tolist()],
            "box_original": [_round(v, 2) for v in (box * to_original).tolist()],
            "atss": {"threshold": _round(trace.atss_threshold[g]), "num_positives": int(trace.atss_positive[g].sum())},
            "dynamic": {"threshold": _round(trace.dynamic_threshold[g]),
                        "num_positives": int(trace.dynamic_positive[g].sum())},
            "candidates": rows,
        })
    return gts


def _round(value: float | Tensor, digits: int = 5) -> float:
    return round(float(value), digits)
