"""Distribution focal loss (GFL, Li et al., Sec. 3.3), element-wise.

A continuous target distance y between the bins y_i = floor(y) and y_{i+1} = y_i + 1 is learnt
by raising the two nearest bins' probabilities, with the linear-interpolation weights:
DFL = -((y_{i+1} - y) log S_i + (y - y_i) log S_{i+1}), S = softmax of the bin logits.
Its minimum puts exactly that mass on the two bins, whose integral is then y.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def distribution_focal_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """[N, n] bin logits, [N] targets in [0, n - 1) (bins) -> [N] un-reduced loss."""
    left = targets.floor().long()  # [N]
    weight_left = (left + 1).to(targets.dtype) - targets
    weight_right = targets - left.to(targets.dtype)
    return (
        F.cross_entropy(logits, left, reduction="none") * weight_left
        + F.cross_entropy(logits, left + 1, reduction="none") * weight_right
    )


def dfl_targets(distances: Tensor, reg_max: int, *, eps: float) -> Tensor:
    """Target distances in bins, clamped to [0, reg_max - eps] so that the right bin exists.

    GFL clamps at reg_max - 0.1 (mmdetection's bbox2distance eps): farther edges are learnt as
    "as far as the distribution reaches".
    """
    return distances.clamp(min=0.0, max=reg_max - eps)
