"""What each head adds to the shared criterion (dynatss.losses.criterion): its classification loss
and target, and its box terms at the positives.

ATSS head (the paper, Sec. III.C):
  classification: focal loss with target 1, or QFL / VFL with the positive's PIoU as soft target;
  box: GIoU weighted by the quality target (``loss.box_weighting=uniform``: by 1), divided by the
       weights' sum, times box_weight (2.0);
  quality: BCE of the quality branch against centerness (ATSS) or PIoU (the IoU branch), averaged
       over the positives (``loss.quality_targets=candidates``: over every ATSS candidate, towards
       the IoU of its predicted box; ``candidates_zero``: the rejected ones towards 0; ``all``: QFL
       over every anchor, the PIoU at the positives and 0 elsewhere, as GFL's joint score).
GFLV2 (mmdetection's GFLHead.loss):
  classification: QFL on the joint score sigmoid(cls) x DGQP towards the PIoU;
  box: GIoU weighted by the positive's highest joint score (detached; ``uniform``: by 1), times
       box_weight (2.0);
  dfl: DFL of the four distributions towards the GT distances in strides (clamped to
       reg_max - 0.1), same weights, mean over the edges, times dfl_weight (0.25);
  both divided by the sum of the weights (at least 1).
VFNet (mmdetection's VFNetHead.loss):
  classification: VFL of the IoU-aware score towards the refined box's PIoU;
  box: GIoU of the initial boxes weighted by their IoU (``uniform``: by 1), times box_weight
       (VFNet: 1.5; the default 2.0 is ATSS's, configs/ablations/vfnet.yaml sets 1.5);
  box_refine: GIoU of the refined boxes weighted by their IoU (``uniform``: by 1), times
       box_refine_weight (2.0);
  each divided by the sum of its weights (at least 1).

Every head's official box weights grow with the positive's own predicted quality, so the boxes it
fits worst are fitted least; ``loss.box_weighting=uniform`` weighs every positive 1 (issue 17).

VFL's soft targets are clamped to at least 1e-6 (MIN_IOU_TARGET) for every head: a positive whose
box misses its GT (PIoU 0) stays a positive with a vanishing weight, as VarifocalNet and
mmdetection, instead of being trained as a negative (tests/losses/test_criterion.py).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dynatss.boxes import elementwise_box_iou
from dynatss.config import LossConfig
from dynatss.data.batch import Batch
from dynatss.errors import DynatssError
from dynatss.losses.box import weighted_giou_loss
from dynatss.losses.classification import focal_loss, quality_focal_loss, varifocal_loss
from dynatss.losses.criterion import PositiveBoxes
from dynatss.losses.dfl import dfl_targets, distribution_focal_loss
from dynatss.losses.positives import average_over_processes, weight_normaliser, without_ignored
from dynatss.losses.quality import candidate_iou_targets, centerness_targets, quality_loss
from dynatss.losses.score_qfl import quality_focal_loss_on_scores
from dynatss.model.integral import boxes_to_distances
from dynatss.model.outputs import ATSSOutputs, GFLOutputs, VFNetOutputs

# VarifocalNet / mmdetection: VFL targets of positives are at least this, so every positive keeps
# a positive target (a PIoU of 0 would otherwise make it a negative).
MIN_IOU_TARGET = 1e-6
# mmdetection's bbox2distance: GT distances are clamped to reg_max - 0.1 bins for the DFL.
DFL_TARGET_EPS = 0.1
# The ATSS box loss divides by the sum of its weights, at least this (the official code).
MIN_WEIGHT_SUM = 1e-6


def _box_weights(config: LossConfig, quality: Tensor) -> Tensor:
    """[P] weights of the positives' box losses: their predicted ``quality`` (the official heads) or 1."""
    return quality if config.box_weighting == "quality" else torch.ones_like(quality)


def _require(config: LossConfig, classification: str, head: str) -> None:
    if config.classification != classification:
        raise DynatssError(f"loss.classification must be '{classification}' for the {head} head, "
                           f"got {config.classification!r}")


class ATSSTerms:
    """The ATSS head's terms; ``quality``: what its quality branch predicts ("centerness" or "iou")."""

    term_names = ("loss_box", "loss_quality")

    def __init__(self, config: LossConfig, *, quality: str) -> None:
        if quality not in ("centerness", "iou"):
            raise ValueError(f"quality must be 'centerness' or 'iou', got {quality!r}")
        if config.quality_targets != "positives" and quality != "iou":
            raise DynatssError(f"loss.quality_targets = {config.quality_targets} trains an IoU branch: it needs "
                               f"model.quality = iou (got {quality})")
        self.config = config
        self.quality = quality

    def classification_target(self, outputs: ATSSOutputs, found: PositiveBoxes) -> Tensor:
        if self.config.classification == "focal":
            return torch.ones_like(found.ious)
        return found.ious.clamp(min=MIN_IOU_TARGET) if self.config.classification == "vfl" else found.ious

    def classification(self, outputs: ATSSOutputs, targets: Tensor) -> Tensor:
        config, logits = self.config, outputs.cls_logits
        if config.classification == "focal":
            return focal_loss(logits, targets, alpha=config.focal_alpha, gamma=config.focal_gamma)
        if config.classification == "qfl":
            return quality_focal_loss(logits, targets, beta=config.qfl_beta)
        return varifocal_loss(logits, targets, alpha=config.vfl_alpha, gamma=config.vfl_gamma)

    def box_terms(self, outputs: ATSSOutputs, found: PositiveBoxes, batch: Batch) -> dict[str, Tensor]:
        positives = found.positives
        if self.quality == "iou":
            quality_targets = found.ious
        else:
            quality_targets = centerness_targets(outputs.anchors[positives.anchor_index], positives.target_boxes)
        box_weights = _box_weights(self.config, quality_targets)
        weight_sum = average_over_processes(box_weights.sum()).clamp(min=MIN_WEIGHT_SUM)
        loss_box = weighted_giou_loss(found.boxes, positives.target_boxes, box_weights) / weight_sum
        return {"loss_box": self.config.box_weight * loss_box,
                "loss_quality": self.config.quality_weight * self._quality_loss(outputs, found, quality_targets, batch)}

    def _quality_loss(self, outputs: ATSSOutputs, found: PositiveBoxes, quality_targets: Tensor,
                      batch: Batch) -> Tensor:
        """Quality-branch loss: mean BCE at the positives (the paper) or at every ATSS candidate
        (``loss.quality_targets=candidates*``, :func:`candidate_iou_targets`); with ``all``, QFL over
        every anchor towards the PIoU at the positives and 0 elsewhere, divided by the number of
        positives (GFL's joint score), crowd regions left out."""
        positives, logits = found.positives, outputs.quality_logits
        image_index, anchor_index = positives.image_index, positives.anchor_index
        if self.config.quality_targets == "positives":
            return quality_loss(logits[image_index, anchor_index], quality_targets) / found.num_pos
        if self.config.quality_targets == "all":
            targets = torch.zeros_like(logits).index_put((image_index, anchor_index), quality_targets)
            loss = quality_focal_loss(logits, targets, beta=self.config.qfl_beta)  # [B, A]
            return without_ignored(loss.unsqueeze(-1), found.ignored).sum() / found.num_pos
        positive_ious = torch.full_like(logits, -1.0).index_put((image_index, anchor_index), quality_targets)
        rejected = "zero" if self.config.quality_targets == "candidates_zero" else "iou"
        targets = candidate_iou_targets(positives.assignment.candidates, found.pred_boxes, batch.gt_boxes.float(),
                                        batch.gt_valid, positive_ious, rejected=rejected)  # [B, A], -1: not trained
        trained = targets >= 0
        count = average_over_processes(trained.sum().float()).clamp(min=1.0)
        return quality_loss(logits[trained], targets[trained]) / count


class GFLTerms:
    """The GFLV2 head's terms (QFL on the joint score, GIoU, DFL)."""

    term_names = ("loss_box", "loss_dfl")

    def __init__(self, config: LossConfig, *, reg_max: int) -> None:
        _require(config, "qfl", "GFL")  # QFL on the joint score
        self.config = config
        self.reg_max = reg_max

    def classification_target(self, outputs: GFLOutputs, found: PositiveBoxes) -> Tensor:
        return found.ious

    def classification(self, outputs: GFLOutputs, targets: Tensor) -> Tensor:
        return quality_focal_loss_on_scores(_joint_scores(outputs), targets, beta=self.config.qfl_beta)

    def box_terms(self, outputs: GFLOutputs, found: PositiveBoxes, batch: Batch) -> dict[str, Tensor]:
        positives = found.positives
        image_index, anchor_index = positives.image_index, positives.anchor_index
        assert outputs.reg_distribution.shape[-1] == 4 * (self.reg_max + 1), outputs.reg_distribution.shape
        joint_scores = _joint_scores(outputs).detach()[image_index, anchor_index]  # [P, C]
        weights = _box_weights(self.config, joint_scores.amax(dim=-1))  # [P]
        normaliser = weight_normaliser(weights)
        loss_box = weighted_giou_loss(found.boxes, positives.target_boxes, weights) / normaliser
        pos_strides = outputs.anchor_strides()[anchor_index, None]  # [P, 1]
        target_bins = dfl_targets(boxes_to_distances(outputs.anchors[anchor_index], positives.target_boxes)
                                  / pos_strides, self.reg_max, eps=DFL_TARGET_EPS)  # [P, 4]
        distribution = outputs.reg_distribution[image_index, anchor_index]  # [P, 4 (reg_max + 1)]
        per_edge = distribution_focal_loss(distribution.reshape(-1, self.reg_max + 1), target_bins.reshape(-1))
        loss_dfl = (per_edge.view(-1, 4).mean(dim=-1) * weights).sum() / normaliser
        return {"loss_box": self.config.box_weight * loss_box, "loss_dfl": self.config.dfl_weight * loss_dfl}


def _joint_scores(outputs: GFLOutputs) -> Tensor:
    """[B, A, C] sigmoid(cls) x DGQP, GFLV2's joint score."""
    return outputs.cls_logits.sigmoid() * outputs.quality_scores().unsqueeze(-1)


class VFNetTerms:
    """The VFNet head's terms (VFL on the IACS, GIoU of the initial and of the refined boxes)."""

    term_names = ("loss_box", "loss_box_refine")

    def __init__(self, config: LossConfig) -> None:
        _require(config, "vfl", "VFNet")  # VFL on the IACS
        self.config = config

    def classification_target(self, outputs: VFNetOutputs, found: PositiveBoxes) -> Tensor:
        return found.ious.clamp(min=MIN_IOU_TARGET)

    def classification(self, outputs: VFNetOutputs, targets: Tensor) -> Tensor:
        return varifocal_loss(outputs.cls_logits, targets, alpha=self.config.vfl_alpha, gamma=self.config.vfl_gamma)

    def box_terms(self, outputs: VFNetOutputs, found: PositiveBoxes, batch: Batch) -> dict[str, Tensor]:
        positives = found.positives
        initial = outputs.initial_boxes_at(positives.image_index, positives.anchor_index)  # [P, 4]
        weights_initial = _box_weights(self.config, _detached_iou(initial, positives.target_boxes))  # [P]
        weights_refined = _box_weights(self.config, found.ious.clamp(min=MIN_IOU_TARGET))  # [P]
        loss_box = (weighted_giou_loss(initial, positives.target_boxes, weights_initial)
                    / weight_normaliser(weights_initial))
        loss_refine = (weighted_giou_loss(found.boxes, positives.target_boxes, weights_refined)
                       / weight_normaliser(weights_refined))
        return {"loss_box": self.config.box_weight * loss_box,
                "loss_box_refine": self.config.box_refine_weight * loss_refine}


def _detached_iou(boxes: Tensor, targets: Tensor) -> Tensor:
    """IoU of the detached ``boxes`` with their targets, at least MIN_IOU_TARGET: [P]."""
    return elementwise_box_iou(boxes.detach(), targets).clamp(min=MIN_IOU_TARGET)
