"""VFNet head (Zhang et al., VarifocalNet): IoU-aware classification score, star-shaped box
features, and box refinement.

Per location (one anchor), as mmdetection's VFNetHead with ATSS:
  1. initial box: the regression tower, one more conv-GN-ReLU, and a conv predict the distances
     (l, t, r, b) = exp(scale_l * x) * distance_unit (distance_unit = anchor size = anchor scale x
     stride, mmdetection's ``reg_denom``);
  2. star-shaped box features: a 3 x 3 deformable conv sampling the star of the initial box
     (dynatss.model.star_dcn) over the regression and classification towers; the offsets see only
     ``gradient_mul`` (0.1) of the gradient, as VFNet;
  3. refinement: from the star features of the regression tower, factors
     delta = exp(scale_refine_l * x); refined = delta * initial (initial detached);
  4. IACS: from the star features of the classification tower, the class logits, trained with
     varifocal loss towards the IoU of the refined box (dynatss.losses.head_terms.VFNetTerms).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dynatss.model.head import GROUP_NORM_GROUPS, INIT_STD, conv_tower, flatten_levels
from dynatss.model.star_dcn import StarDeformConv, star_offsets

# VFNet: fraction of the gradient flowing from the star offsets into the initial box.
DEFAULT_GRADIENT_MUL = 0.1
# ATSS anchors are 8 x stride: mmdetection's reg_denoms (64, ..., 1024) for strides 8 ... 128.
DEFAULT_DISTANCE_SCALE = 8.0


def _conv_gn_relu(channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, padding=1), nn.GroupNorm(GROUP_NORM_GROUPS, channels), nn.ReLU()
    )


class VFNetHead(nn.Module):
    """forward(features) -> IACS logits [B, A, C], initial ltrb [B, A, 4], refined ltrb [B, A, 4]."""

    quality = "iacs"
    num_anchors = 1

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        strides: list[int],
        num_convs: int = 3,
        channels: int = 256,
        prior_prob: float = 0.01,
        distance_scale: float = DEFAULT_DISTANCE_SCALE,
        gradient_mul: float = DEFAULT_GRADIENT_MUL,
        star_dcn_init: str = "uniform",
    ) -> None:
        """``distance_scale`` x stride is the distance unit (exp(0) x unit per side before training);
        ``star_dcn_init`` "uniform" keeps the deformable convs' kaiming-uniform initialisation (mmcv),
        "normal" draws them from N(0, 0.01) (the VFNet authors' code)."""
        super().__init__()
        if star_dcn_init not in ("uniform", "normal"):
            raise ValueError(f"star_dcn_init must be 'uniform' or 'normal', got {star_dcn_init!r}")
        if num_convs < 1:
            raise ValueError("the VFNet head needs at least one tower conv (its star features read it)")
        self.num_classes = num_classes
        self.strides = list(strides)
        self.distance_scale = distance_scale
        self.gradient_mul = gradient_mul
        self.cls_tower = conv_tower(in_channels, channels, num_convs)
        self.reg_tower = conv_tower(in_channels, channels, num_convs)
        self.reg_init_conv = _conv_gn_relu(channels)
        self.reg_init = nn.Conv2d(channels, 4, 3, padding=1)
        self.reg_refine_dconv = StarDeformConv(channels, channels)
        self.reg_refine = nn.Conv2d(channels, 4, 3, padding=1)
        self.cls_dconv = StarDeformConv(channels, channels)
        self.cls_logits = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.scales = nn.Parameter(torch.ones(len(strides)))
        self.scales_refine = nn.Parameter(torch.ones(len(strides)))
        self._init_weights(prior_prob, star_dcn_init)

    def _init_weights(self, prior_prob: float, star_dcn_init: str) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=INIT_STD)
                nn.init.zeros_(module.bias)
            elif isinstance(module, StarDeformConv) and star_dcn_init == "normal":
                nn.init.normal_(module.weight, std=INIT_STD)
        nn.init.constant_(self.cls_logits.bias, -math.log((1.0 - prior_prob) / prior_prob))

    def forward_level(self, feature: Tensor, level: int) -> tuple[Tensor, Tensor, Tensor]:
        """One level [B, in, h, w] -> cls [B, C, h, w], initial and refined ltrb [B, 4, h, w] (px)."""
        stride = self.strides[level]
        cls_feature = self.cls_tower(feature)
        reg_feature = self.reg_tower(feature)
        unit = self.distance_scale * stride
        initial = (self.scales[level] * self.reg_init(self.reg_init_conv(reg_feature))).float().exp() * unit
        # The offsets pass only gradient_mul of their gradient on to the initial box (VFNet).
        guided = (1 - self.gradient_mul) * initial.detach() + self.gradient_mul * initial
        offsets = star_offsets(guided, stride).to(reg_feature.dtype)  # [B, 18, h, w]
        refine_feature = F.relu(self.reg_refine_dconv(reg_feature, offsets))
        delta = (self.scales_refine[level] * self.reg_refine(refine_feature)).float().exp()
        refined = delta * initial.detach()
        cls_logits = self.cls_logits(F.relu(self.cls_dconv(cls_feature, offsets)))
        return cls_logits, initial, refined

    def forward(self, features: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """features: L maps [B, in_channels, h_l, w_l], finest first."""
        if len(features) != len(self.strides):
            raise ValueError(f"expected {len(self.strides)} feature maps, got {len(features)}")
        cls_all, initial_all, refined_all = [], [], []
        for level, feature in enumerate(features):
            cls_logits, initial, refined = self.forward_level(feature, level)
            cls_all.append(flatten_levels(cls_logits, self.num_classes))
            initial_all.append(flatten_levels(initial, 4))
            refined_all.append(flatten_levels(refined, 4))
        return torch.cat(cls_all, dim=1), torch.cat(initial_all, dim=1), torch.cat(refined_all, dim=1)
