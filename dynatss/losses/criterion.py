"""The training loss of (Dynamic) ATSS: assignment, targets, and the three loss terms.

Per batch:
  1. decode the detached regression output into predicted boxes (paper Fig. 1);
  2. assign labels (dynatss.assign.atss_assign): ATSS, combined IoUs, or PIoU only;
  3. classification: focal loss with hard targets, or QFL / VFL with the positives' PIoU as soft
     target (Sec. III.C), over all anchors except those ignored for crowd regions, divided by the
     number of positives;
  4. box: GIoU of the positives weighted by their quality target (``loss.box_weighting=uniform``:
     by 1), divided by the weights' sum, times box_weight (2.0, ATSS);
  5. quality: BCE of the quality branch against centerness (ATSS) or PIoU (the paper's IoU
     branch), averaged over the positives (``loss.quality_targets=candidates``: over every ATSS
     candidate, towards the IoU of its predicted box; ``candidates_zero``: the rejected ones towards 0).
Under DistributedDataParallel both normalisers are averaged over processes, as the official code.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dynatss.boxes import elementwise_box_iou
from dynatss.config import AssignConfig, LossConfig
from dynatss.data.batch import Batch
from dynatss.errors import DynatssError
from dynatss.losses.box import weighted_giou_loss
from dynatss.losses.classification import focal_loss, quality_focal_loss, varifocal_loss
from dynatss.losses.positives import (
    LossOutput,
    Positives,
    assign_positives,
    average_over_processes,
    classification_targets,
    positive_count,
    statistics,
    without_ignored,
)
from dynatss.losses.quality import candidate_iou_targets, centerness_targets, quality_loss
from dynatss.model.outputs import HeadOutputs

__all__ = ["DetectionCriterion", "LossOutput"]


class DetectionCriterion:
    """Loss of the ATSS head with (dynamic) ATSS assignment."""

    def __init__(self, assign_config: AssignConfig, loss_config: LossConfig, *, num_classes: int,
                 box_coder, quality: str) -> None:
        if quality not in ("centerness", "iou"):
            raise ValueError(f"quality must be 'centerness' or 'iou', got {quality!r}")
        if loss_config.quality_targets != "positives" and quality != "iou":
            raise DynatssError(f"loss.quality_targets = {loss_config.quality_targets} trains an IoU branch: it needs "
                               f"model.quality = iou (got {quality})")
        self.assign_config = assign_config
        self.loss_config = loss_config
        self.num_classes = num_classes
        self.box_coder = box_coder
        self.quality = quality

    def __call__(self, outputs: HeadOutputs, batch: Batch, progress: float) -> LossOutput:
        cls_logits = outputs.cls_logits.float()  # [B, A, C]
        box_deltas = outputs.box_deltas.float()  # [B, A, 4]
        quality_logits = outputs.quality_logits.float()  # [B, A]
        anchors = outputs.anchors.float()  # [A, 4]

        pred_boxes = self.box_coder.decode(box_deltas.detach(), anchors)  # [B, A, 4]
        positives = assign_positives(self.assign_config, anchors, outputs.num_anchors_per_level, batch,
                                     pred_boxes, progress)
        image_index, anchor_index = positives.image_index, positives.anchor_index  # [P], [P]
        target_boxes = positives.target_boxes  # [P, 4]

        # Decoded again with gradients, for the positives only.
        pos_boxes = self.box_coder.decode(box_deltas[image_index, anchor_index], anchors[anchor_index])
        pos_pred_ious = elementwise_box_iou(pos_boxes.detach(), target_boxes)  # [P]
        if self.quality == "iou":
            quality_targets = pos_pred_ious
        else:
            quality_targets = centerness_targets(anchors[anchor_index], target_boxes)

        num_pos = positive_count(positives, anchors.device)
        soft = self.loss_config.classification in ("qfl", "vfl")
        cls_targets = classification_targets(cls_logits, positives, pos_pred_ious if soft else
                                             torch.ones_like(pos_pred_ious))  # [B, A, C]
        loss_cls = without_ignored(self._classification(cls_logits, cls_targets), self.assign_config,
                                   anchors, batch, positives).sum() / num_pos
        if len(positives):
            box_weights = quality_targets if self.loss_config.box_weighting == "quality" else \
                torch.ones_like(quality_targets)
            weight_sum = average_over_processes(box_weights.sum()).clamp(min=1e-6)
            loss_box = weighted_giou_loss(pos_boxes, target_boxes, box_weights) / weight_sum
            loss_quality = self._quality_loss(quality_logits, positives, quality_targets, pred_boxes, batch, num_pos,
                                              anchors)
        else:  # keep every output in the graph so that DDP sees all parameters used
            loss_box = box_deltas.sum() * 0.0
            loss_quality = quality_logits.sum() * 0.0
        loss_box = self.loss_config.box_weight * loss_box
        loss_quality = self.loss_config.quality_weight * loss_quality

        return LossOutput(
            total=loss_cls + loss_box + loss_quality,
            terms={"loss_cls": loss_cls.detach(), "loss_box": loss_box.detach(),
                   "loss_quality": loss_quality.detach()},
            stats=statistics(positives, batch, pos_pred_ious),
        )

    def _quality_loss(self, quality_logits: Tensor, positives: Positives, quality_targets: Tensor,
                      pred_boxes: Tensor, batch: Batch, num_pos: Tensor, anchors: Tensor) -> Tensor:
        """Quality-branch loss: mean BCE at the positives (the paper) or at every ATSS candidate
        (``loss.quality_targets=candidates*``, :func:`candidate_iou_targets`); with ``all``, QFL over
        every anchor towards the PIoU at the positives and 0 elsewhere, divided by the number of
        positives (GFL's joint score), crowd regions left out."""
        image_index, anchor_index = positives.image_index, positives.anchor_index
        if self.loss_config.quality_targets == "positives":
            return quality_loss(quality_logits[image_index, anchor_index], quality_targets) / num_pos
        if self.loss_config.quality_targets == "all":
            targets = torch.zeros_like(quality_logits).index_put((image_index, anchor_index), quality_targets)
            loss = quality_focal_loss(quality_logits, targets, beta=self.loss_config.qfl_beta)  # [B, A]
            return without_ignored(loss.unsqueeze(-1), self.assign_config, anchors, batch, positives).sum() / num_pos
        positive_ious = torch.full_like(quality_logits, -1.0).index_put((image_index, anchor_index), quality_targets)
        rejected = "zero" if self.loss_config.quality_targets == "candidates_zero" else "iou"
        targets = candidate_iou_targets(positives.assignment.candidates, pred_boxes, batch.gt_boxes.float(),
                                        batch.gt_valid, positive_ious, rejected=rejected)  # [B, A], -1: not trained
        trained = targets >= 0
        count = average_over_processes(trained.sum().float()).clamp(min=1.0)
        return quality_loss(quality_logits[trained], targets[trained]) / count

    def _classification(self, cls_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Element-wise classification loss [B, A, C] against hard (focal) or soft (QFL, VFL) targets."""
        config = self.loss_config
        if config.classification == "focal":
            return focal_loss(cls_logits, targets, alpha=config.focal_alpha, gamma=config.focal_gamma)
        if config.classification == "qfl":
            return quality_focal_loss(cls_logits, targets, beta=config.qfl_beta)
        return varifocal_loss(cls_logits, targets, alpha=config.vfl_alpha, gamma=config.vfl_gamma)
