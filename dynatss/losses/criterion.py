"""The training loss of every head: assignment, targets and the loss terms, written once.

Per batch (paper Fig. 1, Sec. III.B-C), for any head's outputs (dynatss.model.outputs):
  1. the predicted boxes of every anchor (``outputs.pred_boxes()``, detached);
  2. assign labels (dynatss.assign.atss_assign through :func:`assign_positives`): ATSS, combined
     IoUs, or PIoU only, with the anchor generator's level grids;
  3. the positives' predicted boxes again, with gradients (``outputs.pred_boxes_at``), and their
     IoU with their GT (PIoU, detached);
  4. classification: the head's loss on its score against targets that are 0 everywhere but at
     each positive's (anchor, GT class), where they are the head's target value (1, or a soft IoU),
     over all anchors except those ignored for crowd regions, divided by the number of positives;
  5. the head's box (and quality / distribution / refinement) terms at the positives.
What differs per head (its classification loss and target, its box terms) is a :class:`HeadTerms`
(dynatss.losses.head_terms); what each head predicts is its outputs' interface. Under
DistributedDataParallel the normalisers are averaged over processes, as the official code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from dynatss.boxes import elementwise_box_iou
from dynatss.config import AssignConfig
from dynatss.data.batch import Batch
from dynatss.losses.positives import (
    LossOutput,
    Positives,
    assign_positives,
    classification_targets,
    ignored_mask,
    positive_count,
    statistics,
    without_ignored,
)
from dynatss.model.outputs import HeadOutputs

__all__ = ["DetectionCriterion", "HeadTerms", "LossOutput", "PositiveBoxes"]


@dataclass(frozen=True)
class PositiveBoxes:
    """What the loss terms see of a batch: the positives (P pairs of image and anchor, their GT box
    and label) and the head's predictions for them.

    boxes:      [P, 4] predicted boxes of the positives, with gradients
    ious:       [P] IoU of the detached predicted boxes with their GTs (the PIoU)
    pred_boxes: [B, A, 4] predicted boxes of every anchor, detached (what the assignment used)
    num_pos:    the number of positives averaged over processes, at least 1
    ignored:    [B, A] bool, the anchors inside crowd / difficult regions (left out of the
                classification loss), or None when the batch has no such region
    """

    positives: Positives
    boxes: Tensor
    ious: Tensor
    pred_boxes: Tensor
    num_pos: Tensor
    ignored: Tensor | None


class HeadTerms(Protocol):
    """The parts of the loss a head defines (see dynatss.losses.head_terms)."""

    term_names: tuple[str, ...]  # the keys of :meth:`box_terms`, logged as they are

    def classification_target(self, outputs: HeadOutputs, found: PositiveBoxes) -> Tensor:
        """[P] the classification target of each positive at its GT class."""

    def classification(self, outputs: HeadOutputs, targets: Tensor) -> Tensor:
        """[B, A, C] element-wise classification loss against ``targets`` [B, A, C]."""

    def box_terms(self, outputs: HeadOutputs, found: PositiveBoxes, batch: Batch) -> dict[str, Tensor]:
        """The weighted box (and quality, distribution, refinement) terms, at least one positive."""


class DetectionCriterion:
    """``criterion(outputs, batch, progress) -> LossOutput`` for a head's :class:`HeadTerms`."""

    def __init__(self, assign_config: AssignConfig, terms: HeadTerms) -> None:
        self.assign_config = assign_config
        self.terms = terms

    def __call__(self, outputs: HeadOutputs, batch: Batch, progress: float) -> LossOutput:
        anchors = outputs.anchors.float()  # [A, 4]
        with torch.no_grad():
            pred_boxes = outputs.pred_boxes().float()  # [B, A, 4]
        positives = assign_positives(self.assign_config, anchors, outputs.num_anchors_per_level, batch, pred_boxes,
                                     progress, grids=outputs.level_grids)
        boxes = outputs.pred_boxes_at(positives.image_index, positives.anchor_index)  # [P, 4], with gradients
        found = PositiveBoxes(positives, boxes, elementwise_box_iou(boxes.detach(), positives.target_boxes),
                              pred_boxes, positive_count(positives, anchors.device),
                              ignored_mask(self.assign_config, anchors, batch, positives))

        cls_logits = outputs.cls_logits
        targets = classification_targets(cls_logits, positives, self.terms.classification_target(outputs, found))
        loss_cls = without_ignored(self.terms.classification(outputs, targets), found.ignored).sum() / found.num_pos
        if len(positives):
            terms = self.terms.box_terms(outputs, found, batch)
        else:  # keep every output in the graph so that DDP sees all parameters used
            zero = _zero_with_graph(outputs)
            terms = dict.fromkeys(self.terms.term_names, zero)
        total = loss_cls
        for value in terms.values():  # in order: (cls + box) + quality, as the terms are listed
            total = total + value
        return LossOutput(
            total=total,
            terms={"loss_cls": loss_cls.detach(), **{name: value.detach() for name, value in terms.items()}},
            stats=statistics(positives, batch, found.ious),
        )


def _zero_with_graph(outputs: HeadOutputs) -> Tensor:
    """0, connected to every floating output (a batch without positives still reaches every parameter)."""
    zero = outputs.cls_logits.new_zeros(())
    return sum((value.sum() for value in outputs if torch.is_tensor(value) and value.requires_grad), zero) * 0.0
