"""Shared ATSS head (paper Fig. 1): a classification tower and a regression tower over every level.

Each tower is ``num_convs`` x (3x3 conv, GroupNorm(32), ReLU). On top: class logits per anchor
from the classification tower; box deltas and one quality logit per anchor from the regression
tower. The quality branch is the same conv for both variants; ``quality`` only names what the
loss trains it to predict: "centerness" (ATSS) or "iou" (the paper, the PIoU of the decoded box).
Box deltas are multiplied by a learnable scale per level (init 1.0), as ATSS/FCOS do.
With ``deformable_tower`` the last conv of each tower is a modulated deformable conv
(dynatss/model/dcn.py), as in ATSS's DCN setting (paper Table IV "-DCN" rows).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from dynatss.model.dcn import ModulatedDeformConv2d

GROUP_NORM_GROUPS = 32
# Conv weights ~ N(0, 0.01), biases 0 (RetinaNet / ATSS head initialisation).
INIT_STD = 0.01


def conv_tower(in_channels: int, channels: int, num_convs: int, deformable_last: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(num_convs):
        conv_in = in_channels if i == 0 else channels
        if deformable_last and i == num_convs - 1:
            conv: nn.Conv2d = ModulatedDeformConv2d(in_channels=conv_in, out_channels=channels)
        else:
            conv = nn.Conv2d(conv_in, channels, 3, padding=1)
        layers += [
            conv,
            nn.GroupNorm(GROUP_NORM_GROUPS, channels),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


def flatten_levels(x: Tensor, values_per_anchor: int) -> Tensor:
    """[B, n * V, H, W] -> [B, H * W * n, V] in (y, x, anchor) order, matching AnchorGenerator."""
    b, _, h, w = x.shape
    return x.view(b, -1, values_per_anchor, h, w).permute(0, 3, 4, 1, 2).reshape(b, -1, values_per_anchor)


class ATSSHead(nn.Module):
    """Shared head; ``forward(features)`` returns cls [B, A, C], deltas [B, A, 4], quality [B, A]."""

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        num_anchors: int,
        num_levels: int,
        num_convs: int = 4,
        channels: int = 256,
        prior_prob: float = 0.01,
        quality: str = "iou",
        deformable_tower: bool = False,
    ) -> None:
        super().__init__()
        if quality not in ("centerness", "iou"):
            raise ValueError(f"quality must be 'centerness' or 'iou', got {quality!r}")
        self.num_classes = num_classes
        self.num_anchors = num_anchors
        self.quality = quality
        tower_channels = channels if num_convs > 0 else in_channels
        self.cls_tower = conv_tower(in_channels, channels, num_convs, deformable_tower)
        self.reg_tower = conv_tower(in_channels, channels, num_convs, deformable_tower)
        self.cls_logits = nn.Conv2d(tower_channels, num_anchors * num_classes, 3, padding=1)
        self.box_deltas = nn.Conv2d(tower_channels, num_anchors * 4, 3, padding=1)
        # One logit per anchor; ``self.quality`` records what the loss trains it to predict.
        self.quality_pred = nn.Conv2d(tower_channels, num_anchors, 3, padding=1)
        self.scales = nn.Parameter(torch.ones(num_levels))
        self._init_weights(prior_prob)

    def _init_weights(self, prior_prob: float) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=INIT_STD)
                nn.init.zeros_(module.bias)
        # Focal-loss prior: every anchor starts with foreground probability prior_prob.
        nn.init.constant_(self.cls_logits.bias, -math.log((1.0 - prior_prob) / prior_prob))

    def forward(self, features: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """features: L maps [B, in_channels, h_l, w_l] -> cls [B, A, C], deltas [B, A, 4], quality [B, A]."""
        cls_all, deltas_all, quality_all = [], [], []
        for level, feature in enumerate(features):
            cls_feature = self.cls_tower(feature)
            reg_feature = self.reg_tower(feature)
            cls_all.append(flatten_levels(self.cls_logits(cls_feature), self.num_classes))
            deltas_all.append(flatten_levels(self.box_deltas(reg_feature) * self.scales[level], 4))
            quality_all.append(flatten_levels(self.quality_pred(reg_feature), 1))
        cls_logits = torch.cat(cls_all, dim=1)  # [B, A, C]
        box_deltas = torch.cat(deltas_all, dim=1)  # [B, A, 4]
        quality_logits = torch.cat(quality_all, dim=1).squeeze(-1)  # [B, A]
        return cls_logits, box_deltas, quality_logits
