"""What the detector's forward pass returns: raw head outputs, flattened over levels, plus anchors."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class HeadOutputs(NamedTuple):
    """Head outputs for B images and A anchors (all levels, level-major, then y, x, anchor).

    cls_logits:     [B, A, C] classification logits
    box_deltas:     [B, A, 4] regression deltas relative to the anchors (weights 10, 10, 5, 5),
                    already multiplied by the learnable per-level scale
    quality_logits: [B, A] centerness or IoU logits (config model.quality)
    anchors:        [A, 4] xyxy in input pixels, identical for every image of the batch
    num_anchors_per_level: list of L ints summing to A
    """

    cls_logits: Tensor
    box_deltas: Tensor
    quality_logits: Tensor
    anchors: Tensor
    num_anchors_per_level: list[int]
