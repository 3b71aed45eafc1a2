"""Steps every criterion (ATSS, GFL, VFNet) shares: assign, gather the positives' targets, mask
crowd regions, normalise over processes, and report assignment statistics.

Assignment is ATSS (``assign.mode`` "atss") or the paper's combined IoUs ("dynamic"), given the
predicted boxes of the head at hand (detached), so each head runs both rows of Table V.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from dynatss.assign import Assignment, atss_assign, combination_weights, ignored_anchors, positive_cap
from dynatss.config import AssignConfig
from dynatss.data.batch import Batch
from dynatss.model.anchors import LevelGrid


@dataclass
class LossOutput:
    """total: scalar to backpropagate; terms: detached loss terms; stats: assignment statistics
    (all scalar tensors)."""

    total: Tensor
    terms: dict[str, Tensor]
    stats: dict[str, Tensor]


def average_over_processes(value: Tensor) -> Tensor:
    """Mean of a scalar over DDP processes (itself when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
        value = value / dist.get_world_size()
    return value


@dataclass
class Positives:
    """The positives of a batch: P (image, anchor) pairs and their GT box and label."""

    assignment: Assignment
    image_index: Tensor  # [P]
    anchor_index: Tensor  # [P]
    target_boxes: Tensor  # [P, 4]
    target_labels: Tensor  # [P]

    def __len__(self) -> int:
        return len(self.anchor_index)


def assign_positives(config: AssignConfig, anchors: Tensor, num_anchors_per_level: list[int], batch: Batch,
                     pred_boxes: Tensor, progress: float, *, grids: Sequence[LevelGrid] | None = None) -> Positives:
    """ATSS or Dynamic ATSS assignment with ``pred_boxes`` [B, A, 4] (detached) for the PIoUs;
    ``grids``: the anchor generator's level grids (see dynatss.assign.candidates)."""
    pred_weight, anchor_weight = combination_weights(config, progress)
    assignment = atss_assign(
        anchors, num_anchors_per_level, batch.gt_boxes, batch.gt_valid,
        None if config.mode == "atss" else pred_boxes.detach(),
        topk=config.topk, pred_weight=pred_weight, anchor_weight=anchor_weight, levels=config.levels,
        max_positives=positive_cap(config, progress), grids=grids,
    )
    image_index, anchor_index = assignment.positive.nonzero(as_tuple=True)  # [P], [P]
    gt_index = assignment.gt_index[image_index, anchor_index]  # [P]
    return Positives(
        assignment=assignment,
        image_index=image_index,
        anchor_index=anchor_index,
        target_boxes=batch.gt_boxes[image_index, gt_index].float(),
        target_labels=batch.gt_labels[image_index, gt_index],
    )


def classification_targets(like: Tensor, positives: Positives, values: Tensor) -> Tensor:
    """[B, A, C] zeros with ``values`` [P] at each positive's (image, anchor, GT class)."""
    targets = torch.zeros_like(like)
    targets[positives.image_index, positives.anchor_index, positives.target_labels] = values.to(like.dtype)
    return targets


def ignored_mask(config: AssignConfig, anchors: Tensor, batch: Batch, positives: Positives) -> Tensor | None:
    """[B, A] bool: the anchors inside crowd / difficult regions that are not positives; None when
    the batch has no such region."""
    if not (batch.ignore_valid.numel() and batch.ignore_valid.any()):
        return None
    return ignored_anchors(anchors, batch.ignore_boxes.float(), batch.ignore_valid,
                           iof_threshold=config.ignore_iof) & ~positives.assignment.positive


def without_ignored(loss: Tensor, ignored: Tensor | None) -> Tensor:
    """A loss [B, A, C] with the ``ignored`` anchors [B, A] zeroed (itself when None)."""
    return loss if ignored is None else loss * (~ignored).unsqueeze(-1)


def positive_count(positives: Positives, device: torch.device) -> Tensor:
    """Number of positives averaged over DDP processes, at least 1 (classification normaliser)."""
    return average_over_processes(torch.tensor(float(len(positives)), device=device)).clamp(min=1.0)


def weight_normaliser(weights: Tensor) -> Tensor:
    """Sum of the box-loss weights averaged over processes, at least 1 (mmdetection GFL / VFNet)."""
    return average_over_processes(weights.sum()).clamp(min=1.0)


def statistics(positives: Positives, batch: Batch, pos_pred_ious: Tensor) -> dict[str, Tensor]:
    """What the dynamic assignment does, for logging: positives per GT, mean PIoU / AIoU.

    Scalar tensors on the batch's device, not Python floats: the training step turns everything it
    logs into numbers with one host-device sync (dynatss.engine.train._step).
    """
    positive = positives.assignment.positive
    num_pos = torch.tensor(float(len(positives)), device=positive.device)
    zero = num_pos.new_zeros(())
    return {
        "num_pos": num_pos,
        "pos_per_gt": num_pos / batch.gt_valid.sum().clamp(min=1),
        "mean_piou": pos_pred_ious.detach().float().mean() if len(positives) else zero,
        "mean_aiou": positives.assignment.anchor_ious[positive].float().mean() if len(positives) else zero,
    }
