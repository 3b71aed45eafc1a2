"""GFLV2 head (Li et al., Generalized Focal Loss V1 / V2): distribution regression and the DGQP.

The towers are the ATSS head's (``num_convs`` x conv, GroupNorm, ReLU). On top, per location (one
anchor): class logits from the classification tower, and from the regression tower a discrete
distribution over 0 .. reg_max strides for each of the distances l, t, r, b (times a learnable
per-level scale, as GFL). GFLV2's distribution-guided quality predictor (DGQP) reads the top-k
probabilities of each edge distribution and their mean (4 (k + 1) statistics: sharp distributions
mean well-localised boxes) and predicts, through a small MLP, a quality that multiplies the
classification score: score = sigmoid(cls) * DGQP.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from dynatss.model.head import INIT_STD, conv_tower, flatten_levels
from dynatss.model.integral import DEFAULT_REG_MAX, edge_distributions, logits_with_mean

# GFLV2 defaults: top-4 probabilities per edge plus their mean, hidden width 64.
DEFAULT_DGQP_TOPK = 4
DEFAULT_DGQP_CHANNELS = 64


def distribution_statistics(reg_distribution: Tensor, reg_max: int, topk: int) -> Tensor:
    """DGQP input: per edge the top-k probabilities (descending) and their mean.

    [..., 4 * (reg_max + 1)] logits -> [..., 4 * (topk + 1)], edge-major (l, t, r, b).
    """
    probabilities = edge_distributions(reg_distribution, reg_max)  # [..., 4, n]
    top, _ = probabilities.topk(topk, dim=-1)  # [..., 4, k], sorted descending
    return torch.cat((top, top.mean(dim=-1, keepdim=True)), dim=-1).flatten(-2)  # [..., 4 (k + 1)]


class DistributionGuidedQualityPredictor(nn.Module):
    """GFLV2's DGQP: 4 (k + 1) statistics -> Linear -> ReLU -> Linear -> one quality logit.

    Returns the logit; sigmoid(logit) is the DGQP factor in (0, 1). Linear layers on the flattened
    statistics are GFLV2's 1 x 1 convolutions.
    """

    def __init__(self, *, reg_max: int, topk: int = DEFAULT_DGQP_TOPK,
                 channels: int = DEFAULT_DGQP_CHANNELS) -> None:
        super().__init__()
        if not 1 <= topk <= reg_max + 1:
            raise ValueError(f"DGQP topk must be in 1..{reg_max + 1}, got {topk}")
        self.reg_max = reg_max
        self.topk = topk
        self.mlp = nn.Sequential(
            nn.Linear(4 * (topk + 1), channels), nn.ReLU(inplace=True), nn.Linear(channels, 1)
        )
        for module in self.mlp:
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=INIT_STD)
                nn.init.zeros_(module.bias)

    def forward(self, reg_distribution: Tensor) -> Tensor:
        """[B, A, 4 * (reg_max + 1)] distribution logits -> [B, A] quality logits."""
        statistics = distribution_statistics(reg_distribution, self.reg_max, self.topk)
        return self.mlp(statistics).squeeze(-1)


class GFLHead(nn.Module):
    """forward(features) -> cls [B, A, C], distributions [B, A, 4 (reg_max + 1)], DGQP logits [B, A]."""

    quality = "dgqp"
    num_anchors = 1

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        num_levels: int,
        num_convs: int = 4,
        channels: int = 256,
        prior_prob: float = 0.01,
        reg_max: int = DEFAULT_REG_MAX,
        dgqp_topk: int = DEFAULT_DGQP_TOPK,
        dgqp_channels: int = DEFAULT_DGQP_CHANNELS,
        initial_distance: float | None = None,
    ) -> None:
        """``initial_distance``: the expected distance (in strides) of every edge before training;
        None leaves the distributions uniform (GFL: reg_max / 2 strides per side)."""
        super().__init__()
        self.num_classes = num_classes
        self.reg_max = reg_max
        tower_channels = channels if num_convs > 0 else in_channels
        self.cls_tower = conv_tower(in_channels, channels, num_convs)
        self.reg_tower = conv_tower(in_channels, channels, num_convs)
        self.cls_logits = nn.Conv2d(tower_channels, num_classes, 3, padding=1)
        self.reg_distribution = nn.Conv2d(tower_channels, 4 * (reg_max + 1), 3, padding=1)
        self.scales = nn.Parameter(torch.ones(num_levels))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=INIT_STD)
                nn.init.zeros_(module.bias)
        # Focal-loss prior: every location starts with foreground probability prior_prob.
        nn.init.constant_(self.cls_logits.bias, -math.log((1.0 - prior_prob) / prior_prob))
        if initial_distance is not None:  # model.box_init "anchor": start from the anchor box
            with torch.no_grad():
                self.reg_distribution.bias.copy_(logits_with_mean(initial_distance, reg_max).repeat(4))
        # Built after the conv initialisation above, which it does not touch (it has no convs).
        self.dgqp = DistributionGuidedQualityPredictor(reg_max=reg_max, topk=dgqp_topk, channels=dgqp_channels)

    def forward(self, features: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """features: L maps [B, in_channels, h_l, w_l], finest first."""
        cls_all, distribution_all = [], []
        for level, feature in enumerate(features):
            cls_all.append(flatten_levels(self.cls_logits(self.cls_tower(feature)), self.num_classes))
            distribution = self.reg_distribution(self.reg_tower(feature)) * self.scales[level]
            distribution_all.append(flatten_levels(distribution, 4 * (self.reg_max + 1)))
        cls_logits = torch.cat(cls_all, dim=1)  # [B, A, C]
        reg_distribution = torch.cat(distribution_all, dim=1)  # [B, A, 4 (reg_max + 1)]
        return cls_logits, reg_distribution, self.dgqp(reg_distribution)
