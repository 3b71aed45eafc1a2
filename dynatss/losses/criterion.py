"""The training loss of (Dynamic) ATSS: assignment, targets, and the three loss terms.

Per batch:
  1. decode the detached regression output into predicted boxes (paper Fig. 1);
  2. assign labels (dynatss.assign.atss_assign): ATSS, combined IoUs, or PIoU only;
  3. classification: focal loss with hard targets, or QFL / VFL with the positives' PIoU as soft
     target (Sec. III.C), over all anchors except those ignored for crowd regions, divided by the
     number of positives;
  4. box: GIoU of the positives weighted by their quality target, divided by the targets' sum,
     times box_weight (2.0, ATSS);
  5. quality: BCE of the quality branch against centerness (ATSS) or PIoU (the paper's IoU
     branch), divided by the number of positives.
Under DistributedDataParallel both normalisers are averaged over processes, as the official code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from dynatss.assign import atss_assign, combination_weights, ignored_anchors
from dynatss.boxes import elementwise_box_iou
from dynatss.config import AssignConfig, LossConfig
from dynatss.data.batch import Batch
from dynatss.losses.box import weighted_giou_loss
from dynatss.losses.classification import focal_loss, quality_focal_loss, varifocal_loss
from dynatss.losses.quality import centerness_targets, quality_loss
from dynatss.model.outputs import HeadOutputs


@dataclass
class LossOutput:
    """total: scalar to backpropagate; terms: detached loss terms; stats: assignment statistics."""

    total: Tensor
    terms: dict[str, Tensor]
    stats: dict[str, float]


def _average_over_processes(value: Tensor) -> Tensor:
    """Mean of a scalar over DDP processes (itself when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
        value = value / dist.get_world_size()
    return value


class DetectionCriterion:
    """Loss of the ATSS head with (dynamic) ATSS assignment."""

    def __init__(self, assign_config: AssignConfig, loss_config: LossConfig, *, num_classes: int,
                 box_coder, quality: str) -> None:
        if quality not in ("centerness", "iou"):
            raise ValueError(f"quality must be 'centerness' or 'iou', got {quality!r}")
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

        pred_weight, anchor_weight = combination_weights(self.assign_config, progress)
        pred_boxes = self.box_coder.decode(box_deltas.detach(), anchors)  # [B, A, 4]
        assignment = atss_assign(
            anchors, outputs.num_anchors_per_level, batch.gt_boxes, batch.gt_valid,
            None if self.assign_config.mode == "atss" else pred_boxes,
            topk=self.assign_config.topk, pred_weight=pred_weight, anchor_weight=anchor_weight,
        )
        positive = assignment.positive  # [B, A]
        image_index, anchor_index = positive.nonzero(as_tuple=True)  # [P], [P]
        gt_index = assignment.gt_index[image_index, anchor_index]  # [P]
        target_boxes = batch.gt_boxes[image_index, gt_index].float()  # [P, 4]
        target_labels = batch.gt_labels[image_index, gt_index]  # [P]

        # Decoded again with gradients, for the positives only.
        pos_boxes = self.box_coder.decode(box_deltas[image_index, anchor_index], anchors[anchor_index])
        pos_pred_ious = elementwise_box_iou(pos_boxes.detach(), target_boxes)  # [P]
        if self.quality == "iou":
            quality_targets = pos_pred_ious
        else:
            quality_targets = centerness_targets(anchors[anchor_index], target_boxes)

        num_pos = _average_over_processes(torch.tensor(float(len(anchor_index)), device=anchors.device))
        num_pos = num_pos.clamp(min=1.0)
        loss_cls = self._classification(
            cls_logits, positive, image_index, anchor_index, target_labels, pos_pred_ious, batch, anchors
        ) / num_pos
        if len(anchor_index):
            weight_sum = _average_over_processes(quality_targets.sum()).clamp(min=1e-6)
            loss_box = weighted_giou_loss(pos_boxes, target_boxes, quality_targets) / weight_sum
            loss_quality = quality_loss(quality_logits[image_index, anchor_index], quality_targets) / num_pos
        else:  # keep every output in the graph so that DDP sees all parameters used
            loss_box = box_deltas.sum() * 0.0
            loss_quality = quality_logits.sum() * 0.0
        loss_box = self.loss_config.box_weight * loss_box
        loss_quality = self.loss_config.quality_weight * loss_quality

        return LossOutput(
            total=loss_cls + loss_box + loss_quality,
            terms={"loss_cls": loss_cls.detach(), "loss_box": loss_box.detach(),
                   "loss_quality": loss_quality.detach()},
            stats=self._statistics(assignment, batch, pos_pred_ious),
        )

    def _classification(self, cls_logits, positive, image_index, anchor_index, target_labels,
                        pos_pred_ious, batch, anchors) -> Tensor:
        """Summed classification loss over the anchors not ignored for crowd regions."""
        config = self.loss_config
        targets = torch.zeros_like(cls_logits)  # [B, A, C]
        soft = config.classification in ("qfl", "vfl")
        targets[image_index, anchor_index, target_labels] = pos_pred_ious if soft else 1.0
        if config.classification == "focal":
            loss = focal_loss(cls_logits, targets, alpha=config.focal_alpha, gamma=config.focal_gamma)
        elif config.classification == "qfl":
            loss = quality_focal_loss(cls_logits, targets, beta=config.qfl_beta)
        else:
            loss = varifocal_loss(cls_logits, targets, alpha=config.vfl_alpha, gamma=config.vfl_gamma)
        if batch.ignore_valid.numel() and batch.ignore_valid.any():
            ignored = ignored_anchors(anchors, batch.ignore_boxes.float(), batch.ignore_valid,
                                      iof_threshold=self.assign_config.ignore_iof) & ~positive
            loss = loss * (~ignored).unsqueeze(-1)
        return loss.sum()

    @staticmethod
    def _statistics(assignment, batch: Batch, pos_pred_ious: Tensor) -> dict[str, float]:
        """What the dynamic assignment does, for logging: positives per GT, mean PIoU / AIoU."""
        positive = assignment.positive
        num_pos = int(positive.sum())
        num_gts = int(batch.gt_valid.sum())
        return {
            "num_pos": float(num_pos),
            "pos_per_gt": num_pos / max(num_gts, 1),
            "mean_piou": float(pos_pred_ious.mean()) if num_pos else 0.0,
            "mean_aiou": float(assignment.anchor_ious[positive].mean()) if num_pos else 0.0,
        }
