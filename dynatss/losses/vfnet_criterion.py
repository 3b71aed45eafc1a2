"""The training loss of the VFNet head, with ATSS or the paper's combined-IoU assignment.

Per batch (VarifocalNet, mmdetection's VFNetHead.loss):
  1. decode the refined boxes (detached; these give the PIoUs of the combined-IoU assignment,
     paper Sec. IV.B) and assign: ATSS or combined IoUs (dynatss.losses.positives);
  2. classification: varifocal loss of the IoU-aware classification score towards the IoU of each
     positive's refined box with its GT (0 elsewhere), crowd regions left out, divided by the
     number of positives;
  3. box: GIoU of the positives' initial boxes, weighted by their IoU (detached), times
     box_weight (1.5);
  4. box refinement: GIoU of the refined boxes, weighted by their IoU, times box_refine_weight (2.0);
  3-4 are each divided by the sum of their weights (at least 1), as mmdetection.
"""

from __future__ import annotations

from dynatss.boxes import elementwise_box_iou
from dynatss.config import AssignConfig, LossConfig
from dynatss.data.batch import Batch
from dynatss.errors import DynatssError
from dynatss.losses.box import weighted_giou_loss
from dynatss.losses.classification import varifocal_loss
from dynatss.losses.positives import (
    LossOutput,
    assign_positives,
    classification_targets,
    positive_count,
    statistics,
    weight_normaliser,
    without_ignored,
)
from dynatss.model.head_outputs import VFNetOutputs
from dynatss.model.integral import distances_to_boxes

# mmdetection clamps the IoU targets so that every positive keeps a positive VFL target.
MIN_IOU_TARGET = 1e-6


class VFNetCriterion:
    """Loss of the VFNet head; ``criterion(outputs, batch, progress) -> LossOutput``."""

    def __init__(self, assign_config: AssignConfig, loss_config: LossConfig, *, num_classes: int) -> None:
        if loss_config.classification != "vfl":
            raise DynatssError(f"loss.classification must be 'vfl' for the VFNet head (VFL on the IACS), "
                               f"got {loss_config.classification!r}")
        self.assign_config = assign_config
        self.loss_config = loss_config
        self.num_classes = num_classes

    def __call__(self, outputs: VFNetOutputs, batch: Batch, progress: float) -> LossOutput:
        cls_logits = outputs.cls_logits.float()  # [B, A, C]
        initial_ltrb = outputs.initial_ltrb.float()  # [B, A, 4]
        refined_ltrb = outputs.refined_ltrb.float()  # [B, A, 4]
        anchors = outputs.anchors.float()  # [A, 4]

        pred_boxes = distances_to_boxes(anchors, refined_ltrb.detach())  # [B, A, 4]
        positives = assign_positives(self.assign_config, anchors, outputs.num_anchors_per_level, batch,
                                     pred_boxes, progress)
        image_index, anchor_index = positives.image_index, positives.anchor_index
        pos_anchors, target_boxes = anchors[anchor_index], positives.target_boxes
        pos_initial = distances_to_boxes(pos_anchors, initial_ltrb[image_index, anchor_index])  # [P, 4]
        pos_refined = distances_to_boxes(pos_anchors, refined_ltrb[image_index, anchor_index])  # [P, 4]
        pos_pred_ious = elementwise_box_iou(pos_refined.detach(), target_boxes)  # [P] PIoU, logged
        iou_initial = elementwise_box_iou(pos_initial.detach(), target_boxes).clamp(min=MIN_IOU_TARGET)
        iou_refined = pos_pred_ious.clamp(min=MIN_IOU_TARGET)

        targets = classification_targets(cls_logits, positives, iou_refined)
        config = self.loss_config
        loss_cls = varifocal_loss(cls_logits, targets, alpha=config.vfl_alpha, gamma=config.vfl_gamma)
        loss_cls = without_ignored(loss_cls, self.assign_config, anchors, batch, positives).sum()
        loss_cls = loss_cls / positive_count(positives, anchors.device)

        if len(positives):
            loss_box = weighted_giou_loss(pos_initial, target_boxes, iou_initial) / weight_normaliser(iou_initial)
            loss_refine = weighted_giou_loss(pos_refined, target_boxes, iou_refined) / weight_normaliser(iou_refined)
        else:  # keep every output in the graph so that DDP sees all parameters used
            loss_box = initial_ltrb.sum() * 0.0
            loss_refine = refined_ltrb.sum() * 0.0
        loss_box = config.box_weight * loss_box
        loss_refine = config.box_refine_weight * loss_refine
        return LossOutput(
            total=loss_cls + loss_box + loss_refine,
            terms={"loss_cls": loss_cls.detach(), "loss_box": loss_box.detach(),
                   "loss_box_refine": loss_refine.detach()},
            stats=statistics(positives, batch, pos_pred_ious),
        )
