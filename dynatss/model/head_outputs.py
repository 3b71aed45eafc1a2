"""Outputs of the GFL and VFNet heads, their box decoding, and their adaptation for post-processing.

Post-processing reuses dynatss.model.postprocess: :func:`as_head_outputs` turns either
output into a :class:`HeadOutputs` whose ``box_deltas`` encode the head's decoded boxes with the
detector's box coder and whose ``quality_logits`` give the right score factor under a sigmoid
(GFLV2: the DGQP logit; VFNet: a logit whose sigmoid is exactly 1 in float32, the IACS alone).
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

from dynatss.model.box_coder import BoxCoder
from dynatss.model.integral import anchor_strides, distances_to_boxes, integral
from dynatss.model.outputs import HeadOutputs

# sigmoid(QUALITY_ONE) rounds to exactly 1.0 in float32 (and bfloat16 / float16): VFNet's score is
# its IoU-aware classification score alone.
QUALITY_ONE = 30.0


class GFLOutputs(NamedTuple):
    """GFL / GFLV2 head outputs for B images and A anchors (level-major, then y, x).

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


class VFNetOutputs(NamedTuple):
    """VFNet head outputs for B images and A anchors (level-major, then y, x).

    cls_logits:   [B, A, C] IoU-aware classification score (IACS) logits
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


def gfl_distances(outputs: GFLOutputs) -> Tensor:
    """[B, A, 4] distances in input pixels: the integral of each distribution times its stride."""
    reg_max = outputs.reg_distribution.shape[-1] // 4 - 1
    strides = anchor_strides(outputs.strides, outputs.num_anchors_per_level, outputs.reg_distribution)
    return integral(outputs.reg_distribution, reg_max) * strides[:, None]  # [B, A, 4]


def decode_gfl(outputs: GFLOutputs) -> Tensor:
    """Predicted boxes [B, A, 4] xyxy input pixels (integral-decoded distributions)."""
    return distances_to_boxes(outputs.anchors, gfl_distances(outputs))


def decode_vfnet(outputs: VFNetOutputs, *, refined: bool = True) -> Tensor:
    """Predicted boxes [B, A, 4] xyxy input pixels: the refined boxes, or the initial ones."""
    return distances_to_boxes(outputs.anchors, outputs.refined_ltrb if refined else outputs.initial_ltrb)


def as_head_outputs(outputs: HeadOutputs | GFLOutputs | VFNetOutputs, box_coder: BoxCoder) -> HeadOutputs:
    """The ATSS-style outputs that score and decode like ``outputs`` (HeadOutputs pass through)."""
    if isinstance(outputs, GFLOutputs):
        boxes, quality_logits = decode_gfl(outputs), outputs.quality_logits
    elif isinstance(outputs, VFNetOutputs):
        boxes = decode_vfnet(outputs)
        quality_logits = boxes.new_full(boxes.shape[:-1], QUALITY_ONE)
    else:
        return outputs
    return HeadOutputs(
        cls_logits=outputs.cls_logits,
        box_deltas=box_coder.encode(boxes, outputs.anchors),
        quality_logits=quality_logits,
        anchors=outputs.anchors,
        num_anchors_per_level=outputs.num_anchors_per_level,
    )

