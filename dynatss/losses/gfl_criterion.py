"""The training loss of the GFLV2 head, with ATSS or the paper's combined-IoU assignment.

Per batch (GFL / GFLV2, mmdetection's GFLHead.loss):
  1. decode the predicted boxes: integral of each distance distribution times the stride
     (detached; these give the PIoUs of the combined-IoU assignment, paper Sec. IV.B);
  2. assign: ATSS or combined IoUs (dynatss.losses.positives);
  3. classification: quality focal loss on the joint score sigmoid(cls) * DGQP towards the IoU of
     each positive's decoded box with its GT (0 elsewhere), crowd regions left out, divided by
     the number of positives;
  4. box: GIoU of the positives' decoded boxes, weighted by their highest joint score (detached),
     times box_weight (2.0);
  5. DFL of each positive's four distributions towards its GT distances in strides (clamped to
     reg_max - 0.1), same weights, mean over the four edges, times dfl_weight (0.25);
  4-5 are divided by the sum of the weights (at least 1), as mmdetection.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dynatss.boxes import elementwise_box_iou
from dynatss.config import AssignConfig, LossConfig
from dynatss.data.batch import Batch
from dynatss.errors import DynatssError
from dynatss.losses.box import weighted_giou_loss
from dynatss.losses.dfl import dfl_targets, distribution_focal_loss
from dynatss.losses.positives import (
    LossOutput,
    assign_positives,
    classification_targets,
    positive_count,
    statistics,
    weight_normaliser,
    without_ignored,
)
from dynatss.losses.score_qfl import quality_focal_loss_on_scores
from dynatss.model.head_outputs import GFLOutputs
from dynatss.model.integral import anchor_strides, boxes_to_distances, distances_to_boxes, integral

# mmdetection's bbox2distance: GT distances are clamped to reg_max - 0.1 bins for the DFL.
DFL_TARGET_EPS = 0.1


class GFLCriterion:
    """Loss of the GFLV2 head; ``criterion(outputs, batch, progress) -> LossOutput``."""

    def __init__(self, assign_config: AssignConfig, loss_config: LossConfig, *, num_classes: int,
                 reg_max: int) -> None:
        if loss_config.classification != "qfl":
            raise DynatssError(f"loss.classification must be 'qfl' for the GFL head (QFL on the joint score), "
                               f"got {loss_config.classification!r}")
        self.assign_config = assign_config
        self.loss_config = loss_config
        self.num_classes = num_classes
        self.reg_max = reg_max

    def __call__(self, outputs: GFLOutputs, batch: Batch, progress: float) -> LossOutput:
        cls_logits = outputs.cls_logits.float()  # [B, A, C]
        reg_distribution = outputs.reg_distribution.float()  # [B, A, 4 (reg_max + 1)]
        quality_logits = outputs.quality_logits.float()  # [B, A]
        anchors = outputs.anchors.float()  # [A, 4]
        assert reg_distribution.shape[-1] == 4 * (self.reg_max + 1), reg_distribution.shape
        strides = anchor_strides(outputs.strides, outputs.num_anchors_per_level, anchors)  # [A]

        with torch.no_grad():
            pred_boxes = distances_to_boxes(anchors, integral(reg_distribution, self.reg_max) * strides[:, None])
        positives = assign_positives(self.assign_config, anchors, outputs.num_anchors_per_level, batch,
                                     pred_boxes, progress)
        image_index, anchor_index = positives.image_index, positives.anchor_index
        pos_distribution = reg_distribution[image_index, anchor_index]  # [P, 4 (reg_max + 1)]
        pos_strides = strides[anchor_index, None]  # [P, 1]
        # Decoded again with gradients, for the positives only.
        pos_boxes = distances_to_boxes(anchors[anchor_index], integral(pos_distribution, self.reg_max) * pos_strides)
        pos_ious = elementwise_box_iou(pos_boxes.detach(), positives.target_boxes)  # [P]

        scores = cls_logits.sigmoid() * quality_logits.sigmoid().unsqueeze(-1)  # [B, A, C] joint score
        targets = classification_targets(scores, positives, pos_ious)
        loss_cls = quality_focal_loss_on_scores(scores, targets, beta=self.loss_config.qfl_beta)
        loss_cls = without_ignored(loss_cls, self.assign_config, anchors, batch, positives).sum()
        loss_cls = loss_cls / positive_count(positives, anchors.device)

        if len(positives):
            weights = scores.detach()[image_index, anchor_index].amax(dim=-1)  # [P]
            normaliser = weight_normaliser(weights)
            loss_box = weighted_giou_loss(pos_boxes, positives.target_boxes, weights) / normaliser
            loss_dfl = self._dfl(pos_distribution, anchors[anchor_index], positives.target_boxes, pos_strides,
                                 weights) / normaliser
        else:  # keep every output in the graph so that DDP sees all parameters used
            loss_box = reg_distribution.sum() * 0.0
            loss_dfl = reg_distribution.sum() * 0.0
        loss_box = self.loss_config.box_weight * loss_box
        loss_dfl = self.loss_config.dfl_weight * loss_dfl
        return LossOutput(
            total=loss_cls + loss_box + loss_dfl,
            terms={"loss_cls": loss_cls.detach(), "loss_box": loss_box.detach(), "loss_dfl": loss_dfl.detach()},
            stats=statistics(positives, batch, pos_ious),
        )

    def _dfl(self, pos_distribution: Tensor, pos_anchors: Tensor, target_boxes: Tensor, pos_strides: Tensor,
             weights: Tensor) -> Tensor:
        """Weighted sum over positives of the mean DFL of their four edges: scalar."""
        target_bins = dfl_targets(boxes_to_distances(pos_anchors, target_boxes) / pos_strides, self.reg_max,
                                  eps=DFL_TARGET_EPS)  # [P, 4]
        per_edge = distribution_focal_loss(pos_distribution.reshape(-1, self.reg_max + 1), target_bins.reshape(-1))
        return (per_edge.view(-1, 4).mean(dim=-1) * weights).sum()
