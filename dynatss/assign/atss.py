"""ATSS and Dynamic ATSS label assignment, batched over images (paper Sec. III.A-B, Fig. 1).

For every ground-truth box (GT):
  1. candidates: per pyramid level, the anchors whose centres are nearest to the GT centre, k per
     anchor location (k x anchors per location in all; ATSS: k = 9 with one anchor per location);
  2. IoUs of the candidates: AIoU (anchor vs GT) and, for Dynamic ATSS, PIoU (predicted box vs GT);
     combined IoU = w_p * PIoU + w_a * AIoU (plain ATSS: AIoU alone);
  3. adaptive threshold: w_p * (mean(PIoU) + std(PIoU)) + w_a * (mean(AIoU) + std(AIoU)): the
     combined mean plus the weighted sum of the two stds, which is not the std of the combined
     IoU (unbiased stds, as the official code; tests/assign/test_atss.py shows the two differ);
  4. positives: candidates whose combined IoU is at or above the threshold and whose anchor centre
     lies inside the GT (with ``levels="anchor"``, not an option of the paper, also on a level the
     anchors choose for the GT: :func:`anchor_levels`; with ``max_positives="atss"``, also not an
     option of the paper, a GT keeps at most as many of them as plain ATSS would give it, those with
     the highest combined IoU: :func:`keep_top`);
  5. conflicts: an anchor claimed by several GTs goes to the GT with the highest combined IoU
     (ties to the lower GT index).
GTs are padded per image with a validity mask; nothing loops over images or boxes. With the anchor
generator's level grids (``grids``) step 1 looks at a window of each level's grid, so memory grows
with G x window, not with anchors x GTs; without them each level is searched whole (G x A_l).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from dynatss.assign.candidates import nearest_anchors
from dynatss.boxes import elementwise_box_iou
from dynatss.model.anchors import LevelGrid

# Official ATSS: an anchor centre is inside a GT when its distance to every side exceeds this (px).
CENTER_INSIDE_EPS = 0.01


@dataclass
class Assignment:
    """Result of :func:`atss_assign` for B images, A anchors, G (padded) GTs.

    gt_index:    [B, A] int64, index of the assigned GT, -1 for background
    anchor_ious: [B, A] AIoU of each positive with its GT, 0 for background
    pred_ious:   [B, A] PIoU of each positive with its GT, 0 for background (and in plain ATSS)
    threshold:   [B, G] the adaptive IoU threshold of each GT (0 for padding)
    candidates:  [B, G, K] anchor index of each GT's K candidates (padding GTs' are meaningless)
    """

    gt_index: Tensor
    anchor_ious: Tensor
    pred_ious: Tensor
    threshold: Tensor
    candidates: Tensor

    @property
    def positive(self) -> Tensor:
        """[B, A] bool."""
        return self.gt_index >= 0


def candidate_ious(
    anchors: Tensor, pred_boxes: Tensor | None, gt_boxes: Tensor, candidates: Tensor
) -> tuple[Tensor, Tensor]:
    """AIoU and PIoU of each candidate with its GT: [B, G, K] each (PIoU 0 without predictions)."""
    gt = gt_boxes.unsqueeze(2)  # [B, G, 1, 4]
    anchor_ious = elementwise_box_iou(anchors[candidates], gt)  # [B, G, K]
    if pred_boxes is None:
        return anchor_ious, torch.zeros_like(anchor_ious)
    batch_index = torch.arange(candidates.shape[0], device=candidates.device).view(-1, 1, 1)
    pred_ious = elementwise_box_iou(pred_boxes[batch_index, candidates], gt)  # [B, G, K]
    return anchor_ious, pred_ious


def _mean_plus_std(values: Tensor) -> Tensor:
    """[B, G, K] -> [B, G]: mean + unbiased std over the candidates (std 0 for one candidate)."""
    if values.shape[-1] < 2 or values.numel() == 0:
        return values.mean(dim=-1).nan_to_num(0.0)
    std = values.std(dim=-1)
    return values.mean(dim=-1) + std


def adaptive_threshold(
    anchor_ious: Tensor, pred_ious: Tensor, pred_weight: float, anchor_weight: float
) -> Tensor:
    """Combined threshold [B, G]: the weighted sum of each IoU's mean + std (paper Fig. 1)."""
    threshold = anchor_weight * _mean_plus_std(anchor_ious)
    if pred_weight != 0:
        threshold = threshold + pred_weight * _mean_plus_std(pred_ious)
    return threshold


def candidate_levels(candidates: Tensor, num_anchors_per_level: list[int]) -> Tensor:
    """[B, G, K] int64: the pyramid level of each candidate anchor."""
    level_ends = torch.tensor(num_anchors_per_level, device=candidates.device).cumsum(0)  # [L]
    return torch.bucketize(candidates, level_ends, right=True)


def anchor_levels(anchor_ious: Tensor, levels: Tensor, num_levels: int) -> Tensor:
    """[B, G, K] bool: the candidate lies on a level the anchors choose for its GT.

    A level is chosen when its best candidate AIoU reaches the plain ATSS threshold (mean + std of
    the AIoUs), the levels where ATSS itself can place positives; the level of the best AIoU is
    always chosen, so every GT keeps a level. anchor_ious, levels: [B, G, K].
    """
    best_per_level = anchor_ious.new_full((*anchor_ious.shape[:2], num_levels), -1.0)
    best_per_level = best_per_level.scatter_reduce(-1, levels, anchor_ious, reduce="amax")  # [B, G, L]
    bar = torch.minimum(_mean_plus_std(anchor_ious), anchor_ious.amax(dim=-1))  # [B, G]
    chosen = best_per_level >= bar.unsqueeze(-1)  # [B, G, L]
    return chosen.gather(-1, levels)


def atss_counts(anchor_ious: Tensor, inside: Tensor) -> Tensor:
    """[B, G] int64: how many positives plain ATSS gives each GT (AIoU >= mean + std, centre inside),
    at least 1. anchor_ious, inside: [B, G, K]."""
    passes = anchor_ious >= _mean_plus_std(anchor_ious).unsqueeze(-1)  # [B, G, K]
    return (passes & inside).sum(dim=-1).clamp(min=1)


def keep_top(scores: Tensor, is_positive: Tensor, counts: Tensor) -> Tensor:
    """[B, G, K] bool: the ``counts`` [B, G] positives of each GT with the highest ``scores`` [B, G, K]
    (ties to the earlier candidate); the others are dropped."""
    order = scores.masked_fill(~is_positive, float("-inf")).argsort(dim=-1, descending=True, stable=True)
    rank = order.argsort(dim=-1)  # [B, G, K]: 0 for each GT's best candidate
    return is_positive & (rank < counts.unsqueeze(-1))


def centers_inside(anchors: Tensor, gt_boxes: Tensor, candidates: Tensor) -> Tensor:
    """[B, G, K] bool: the candidate anchor's centre lies strictly inside its GT."""
    centers = (anchors[candidates, :2] + anchors[candidates, 2:]) / 2  # [B, G, K, 2]
    gt = gt_boxes.unsqueeze(2)  # [B, G, 1, 4]
    distances = torch.cat([centers - gt[..., :2], gt[..., 2:] - centers], dim=-1)  # [B, G, K, 4]
    return distances.amin(dim=-1) > CENTER_INSIDE_EPS


def resolve_conflicts(
    candidates: Tensor, is_positive: Tensor, combined_ious: Tensor, num_anchors: int
) -> Tensor:
    """Give each anchor to the GT with the highest combined IoU among those claiming it.

    candidates, is_positive, combined_ious: [B, G, K]. Returns gt_index [B, A] (-1 = background);
    ties go to the lower GT index so that the result does not depend on the device.
    """
    batch, num_gts, _ = candidates.shape
    device = candidates.device
    claims = combined_ious.masked_fill(~is_positive, float("-inf")).flatten(1)  # [B, G*K]
    flat_candidates = candidates.flatten(1)  # [B, G*K]
    best = torch.full((batch, num_anchors), float("-inf"), device=device, dtype=claims.dtype)
    best = best.scatter_reduce(1, flat_candidates, claims, reduce="amax")  # [B, A]
    gt_of_claim = torch.arange(num_gts, device=device).view(1, -1, 1).expand_as(candidates).flatten(1)
    wins = is_positive.flatten(1) & (claims == best.gather(1, flat_candidates))  # [B, G*K]
    no_winner = torch.full((batch, num_anchors), num_gts, device=device, dtype=torch.long)
    winner = no_winner.scatter_reduce(
        1, flat_candidates, gt_of_claim.masked_fill(~wins, num_gts), reduce="amin"
    )  # [B, A]
    return winner.masked_fill(winner == num_gts, -1)


def _scatter_to_anchors(
    values: Tensor, candidates: Tensor, won: Tensor, num_anchors: int
) -> Tensor:
    """Place each winning candidate's value [B, G, K] at its anchor: [B, A] (0 elsewhere)."""
    out = torch.zeros(values.shape[0], num_anchors, device=values.device, dtype=values.dtype)
    return out.scatter_add(1, candidates.flatten(1), (values * won).flatten(1))


def atss_assign(
    anchors: Tensor,
    num_anchors_per_level: list[int],
    gt_boxes: Tensor,
    gt_valid: Tensor,
    pred_boxes: Tensor | None = None,
    *,
    topk: int = 9,
    pred_weight: float = 1.0,
    anchor_weight: float = 1.0,
    levels: str = "all",
    max_positives: str = "threshold",
    grids: Sequence[LevelGrid] | None = None,
) -> Assignment:
    """ATSS (``pred_boxes`` None) or Dynamic ATSS label assignment for a batch.

    anchors: [A, 4] xyxy, the same for every image; num_anchors_per_level: L ints summing to A;
    gt_boxes: [B, G, 4] xyxy; gt_valid: [B, G] bool (False = padding); pred_boxes: [B, A, 4]
    boxes decoded from the detached regression output. ``pred_weight`` and ``anchor_weight`` are
    the w_p and w_a of the combined IoU (Table III); anchor_weight=0 gives "PIoU only" (Table II).
    ``levels``: "all" (the paper) or "anchor" (positives only on the levels of :func:`anchor_levels`).
    ``max_positives``: "threshold" (the paper: every candidate at or above it) or "atss" (at most
    :func:`atss_counts` per GT, chosen by combined IoU: :func:`keep_top`).
    ``grids``: the anchor generator's layout of each level (see :func:`nearest_anchors`).
    """
    num_anchors = anchors.shape[0]
    assert anchors.shape == (num_anchors, 4), anchors.shape
    assert sum(num_anchors_per_level) == num_anchors, (num_anchors_per_level, num_anchors)
    assert gt_boxes.dim() == 3 and gt_boxes.shape[-1] == 4, gt_boxes.shape
    assert gt_valid.shape == gt_boxes.shape[:2], (gt_valid.shape, gt_boxes.shape)
    assert levels in ("all", "anchor"), levels
    assert max_positives in ("threshold", "atss"), max_positives
    if pred_boxes is not None:
        assert pred_boxes.shape == (gt_boxes.shape[0], num_anchors, 4), pred_boxes.shape
        pred_boxes = pred_boxes.detach()
    else:
        pred_weight = 0.0

    candidates = nearest_anchors(anchors, num_anchors_per_level, gt_boxes, topk, grids)  # [B, G, K]
    anchor_ious, pred_ious = candidate_ious(anchors, pred_boxes, gt_boxes, candidates)
    combined_ious = pred_weight * pred_ious + anchor_weight * anchor_ious  # [B, G, K]
    threshold = adaptive_threshold(anchor_ious, pred_ious, pred_weight, anchor_weight)  # [B, G]
    inside = centers_inside(anchors, gt_boxes, candidates)  # [B, G, K]
    is_positive = (combined_ious >= threshold.unsqueeze(-1)) & inside & gt_valid.unsqueeze(-1)  # [B, G, K]
    if levels == "anchor":
        level = candidate_levels(candidates, num_anchors_per_level)  # [B, G, K]
        is_positive &= anchor_levels(anchor_ious, level, len(num_anchors_per_level))
    if max_positives == "atss":
        is_positive = keep_top(combined_ious, is_positive, atss_counts(anchor_ious, inside))
    gt_index = resolve_conflicts(candidates, is_positive, combined_ious, num_anchors)  # [B, A]

    gt_ids = torch.arange(gt_boxes.shape[1], device=gt_boxes.device).view(1, -1, 1)
    won = is_positive & (gt_index.gather(1, candidates.flatten(1)).view_as(candidates) == gt_ids)
    return Assignment(
        gt_index=gt_index,
        anchor_ious=_scatter_to_anchors(anchor_ious, candidates, won, num_anchors),
        pred_ious=_scatter_to_anchors(pred_ious, candidates, won, num_anchors),
        threshold=threshold.masked_fill(~gt_valid, 0.0),
        candidates=candidates,
    )
