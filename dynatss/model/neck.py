"""Neck: feature pyramid P{min_level}..P{max_level} from backbone maps C{min_level}..C5 (paper Fig. 1).

torchvision's FeaturePyramidNetwork builds P3-P5 (or P4-P5 when min_level is 4: the stride-8
lateral and output convs are then not built at all, which is what makes CPU configs cheap).
P6 and P7 come from the P5 *output* through stride-2 3x3 convs, ReLU between them: ATSS /
mmdetection's ``add_extra_convs='on_output'`` (torchvision's LastLevelP6P7 with equal channels).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelP6P7


class Neck(nn.Module):
    """FPN over the backbone maps; returns a list of L maps [B, fpn_channels, H/s, W/s], finest first."""

    def __init__(self, *, in_channels: list[int], out_channels: int, with_p6p7: bool) -> None:
        super().__init__()
        extra = LastLevelP6P7(out_channels, out_channels) if with_p6p7 else None
        self.fpn = FeaturePyramidNetwork(in_channels, out_channels, extra_blocks=extra)
        self.num_levels = len(in_channels) + (2 if with_p6p7 else 0)

    def forward(self, features: OrderedDict[str, Tensor]) -> list[Tensor]:
        return list(self.fpn(features).values())
