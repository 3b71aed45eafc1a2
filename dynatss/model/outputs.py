"""What the detector's forward pass returns, one type per head, and what each head says about itself.

Every head's outputs are flattened over levels (level-major, then y, x, anchor) with the anchors,
and implement the same small interface (:class:`DenseOutputs`), which is all the criterion
(dynatss.losses.criterion), post-processing and export need to know about a head:

    pred_boxes()                     [B, A, 4] the boxes the head predicts, xyxy input pixels
    pred_boxes_at(image, anchor)     the same at chosen (image, anchor) pairs (broadcastable indices)
    quality_scores()                 [B, A] the factor the class probability is multiplied by in the
                                     detection score, or None when the head has none (VFNet: its
                                     IoU-aware class score is the score)

No head fakes another's outputs: the GFL and VFNet heads decode their own distance predictions.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch
from torch import Tensor

from dynatss.model.anchors import LevelGrid
from dynatss.model.box_coder import BoxCoder
from dynatss.model.integral import anchor_strides, distances_to_boxes, integral


class DenseOutputs(Protocol):
    """The interface every head's outputs implement (see the module docstring)."""

    cls_logits: Tensor  # [B, A, C]
    anchors: Tensor  # [A, 4] xyxy input pixels, the same for every image
    num_anchors_per_level: list[int]
    level_grids: tuple[LevelGrid, ...] | None

    def pred_boxes(self) -> Tensor: ...

    def pred_boxes_at(self, image_index: Tensor, anchor_index: Tensor) -> Tensor: ...

    def quality_scores(self) -> Tensor | None: ...


class ATSSOutputs(NamedTuple):
    """ATSS head outputs for B images and A anchors.

    cls_logits:     [B, A, C] classification logits
    box_deltas:     [B, A, 4] regression deltas relative to the anchors (box_coder's weights),
                    already multiplied by the learnable per-level scale
    quality_logits: [B, A] centerness or IoU logits (config model.quality)
    anchors:        [A, 4] xyxy in input pixels; num_anchors_per_level: L ints summing to A
    level_grids:    the anchor grid of each level (dynatss.model.anchors), None when not known
    box_coder:      how the deltas decode into boxes
    """

    cls_logits: Tensor
    box_deltas: Tensor
    quality_logits: Tensor
    anchors: Tensor
    num_anchors_per_level: list[int]
    level_grids: tuple[LevelGrid, ...] | None = None
    box_coder: BoxCoder = BoxCoder()

    def pred_boxes(self) -> Tensor:
        return self.box_coder.decode(self.box_deltas, self.anchors)

    def pred_boxes_at(self, image_index: Tensor, anchor_index: Tensor) -> Tensor:
        return self.box_coder.decode(self.box_deltas[image_index, anchor_index], self.anchors[anchor_index])

    def quality_scores(self) -> Tensor:
        return torch.sigmoid(self.quality_logits)


class GFLOutputs(NamedTuple):
    """GFL / GFLV2 head outputs for B images and A anchors.

    cls_logits:       [B, A, C] classification logits; the joint score is
                      sigmoid(cls_logits) * sigmoid(quality_logits) (GFLV2)
    reg_distribution: [B, A, 4 * (reg_max + 1)] logits of the l, t, r, b distance distributions
                      over the bins 0 .. reg_max, in units of the level stride
    quality_logits:   [B, A] logit of the distribution-guided quality predictor (DGQP)
    anchors:          [A, 4] xyxy input pixels; num_anchors_per_level: L ints; strides: L ints
    """

    cls_logits: Tensor
    reg_distribution: Tensor
    quality_logits: Tensor
    anchors: Tensor
    num_anchors_per_level: list[int]
    strides: list[int]
    level_grids: tuple[LevelGrid, ...] | None = None

    @property
    def reg_max(self) -> int:
        return self.reg_distribution.shape[-1] // 4 - 1

    def anchor_strides(self) -> Tensor:
        """[A] the stride of every anchor's level."""
        return anchor_strides(self.strides, self.num_anchors_per_level, self.reg_distribution)

    def pred_boxes(self) -> Tensor:
        """Integral of each distribution times its stride, from the anchor centres: [B, A, 4]."""
        distances = integral(self.reg_distribution, self.reg_max) * self.anchor_strides()[:, None]
        return distances_to_boxes(self.anchors, distances)

    def pred_boxes_at(self, image_index: Tensor, anchor_index: Tensor) -> Tensor:
        distribution = self.reg_distribution[image_index, anchor_index]
        distances = integral(distribution, self.reg_max) * self.anchor_strides()[anchor_index].unsqueeze(-1)
        return distances_to_boxes(self.anchors[anchor_index], distances)

    def quality_scores(self) -> Tensor:
        return torch.sigmoid(self.quality_logits)


class VFNetOutputs(NamedTuple):
    """VFNet head outputs for B images and A anchors.

    cls_logits:   [B, A, C] IoU-aware classification score (IACS) logits: the score itself
    initial_ltrb: [B, A, 4] initial distances (l, t, r, b) from the anchor centres, input pixels
    refined_ltrb: [B, A, 4] refined distances = initial (detached) * the star features' factors
    anchors:      [A, 4] xyxy input pixels; num_anchors_per_level: L ints; strides: L ints
    """

    cls_logits: Tensor
    initial_ltrb: Tensor
    refined_ltrb: Tensor
    anchors: Tensor
    num_anchors_per_level: list[int]
    strides: list[int]
    level_grids: tuple[LevelGrid, ...] | None = None

    def pred_boxes(self) -> Tensor:
        """The refined boxes: [B, A, 4]."""
        return distances_to_boxes(self.anchors, self.refined_ltrb)

    def pred_boxes_at(self, image_index: Tensor, anchor_index: Tensor) -> Tensor:
        return distances_to_boxes(self.anchors[anchor_index], self.refined_ltrb[image_index, anchor_index])

    def initial_boxes_at(self, image_index: Tensor, anchor_index: Tensor) -> Tensor:
        """The initial (before refinement) boxes at (image, anchor) pairs."""
        return distances_to_boxes(self.anchors[anchor_index], self.initial_ltrb[image_index, anchor_index])

    def quality_scores(self) -> None:
        return None


HeadOutputs = ATSSOutputs | GFLOutputs | VFNetOutputs
