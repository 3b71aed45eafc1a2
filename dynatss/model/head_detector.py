"""The detector with a GFLV2 or VFNet head instead of the ATSS head (paper Sec. IV.B, Table V).

Backbone, neck, anchors (one square anchor per location), box coder and input normalisation are
the ATSS detector's; only the head and the output tuple differ.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dynatss.config import ModelConfig
from dynatss.errors import DynatssError
from dynatss.model.detector import DetectionModel
from dynatss.model.gfl_head import GFLHead
from dynatss.model.head_outputs import GFLOutputs, VFNetOutputs
from dynatss.model.vfnet_head import VFNetHead

HEADS = ("gfl", "vfnet")


class HeadDetectionModel(DetectionModel):
    """``forward(images [B, 3, H, W] 0..255)`` -> GFLOutputs or VFNetOutputs, by the head."""

    def forward(self, images: Tensor) -> GFLOutputs | VFNetOutputs:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images [B, 3, H, W], got {tuple(images.shape)}")
        features = self.neck(self.backbone(self.normalize(images)))  # L maps [B, F, h_l, w_l]
        cls_logits, box_output, extra = self.head(features)
        anchors, num_anchors_per_level = self.anchor_generator(
            (images.shape[-2], images.shape[-1]),
            [(f.shape[-2], f.shape[-1]) for f in features],
            device=cls_logits.device,
            # float32 at least: half-precision anchors would lose pixels on large images (autocast)
            dtype=torch.promote_types(box_output.dtype, torch.float32),
        )
        assert anchors.shape[0] == cls_logits.shape[1], (anchors.shape, cls_logits.shape)
        if isinstance(self.head, GFLHead):  # extra: DGQP logits [B, A]
            return GFLOutputs(cls_logits, box_output, extra, anchors, num_anchors_per_level, self.strides)
        # VFNet: box_output the initial, extra the refined distances [B, A, 4]
        return VFNetOutputs(cls_logits, box_output, extra, anchors, num_anchors_per_level, self.strides)


def build_head(cfg: ModelConfig, *, head: str, strides: list[int]) -> nn.Module:
    """The GFLV2 (``head="gfl"``) or VFNet (``"vfnet"``) head for ``cfg``'s FPN levels."""
    if len(cfg.anchor_scales) != 1 or len(cfg.anchor_ratios) != 1:
        raise DynatssError(
            f"model.head '{head}' predicts one box per location: give one anchor scale and one ratio, "
            f"got scales {cfg.anchor_scales} and ratios {cfg.anchor_ratios}"
        )
    common = dict(in_channels=cfg.fpn_channels, num_classes=cfg.num_classes, num_convs=cfg.head_convs,
                  channels=cfg.head_channels, prior_prob=cfg.prior_prob)
    # model.box_init "anchor": the first boxes are the anchors (half an anchor per side).
    anchor_half_size = cfg.anchor_scales[0] / 2  # in strides
    if head == "gfl":
        return GFLHead(num_levels=len(strides), reg_max=cfg.reg_max, dgqp_topk=cfg.dgqp_topk,
                       dgqp_channels=cfg.dgqp_channels,
                       initial_distance=anchor_half_size if cfg.box_init == "anchor" else None, **common)
    if head == "vfnet":
        if cfg.head_convs < 1:
            raise DynatssError("model.head_convs must be >= 1 for the VFNet head")
        return VFNetHead(strides=strides,
                         distance_scale=anchor_half_size if cfg.box_init == "anchor" else cfg.anchor_scales[0],
                         gradient_mul=cfg.star_gradient_mul, star_dcn_init=cfg.star_dcn_init, **common)
    raise DynatssError(f"model.head must be one of {('atss', *HEADS)}, got {head!r}")
