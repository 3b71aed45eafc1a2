"""Quality focal loss on probabilities (GFLV2): the joint score is sigmoid(cls) * DGQP, a product
of probabilities, not a logit, so the cross entropy is taken on the score itself (GFLV2's QFL with
``use_sigmoid=False``)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from dynatss.losses.classification import QFL_BETA


def quality_focal_loss_on_scores(scores: Tensor, targets: Tensor, *, beta: float = QFL_BETA) -> Tensor:
    """-|y - s|^beta * ((1 - y) log(1 - s) + y log s) for scores s in [0, 1]: [N, C] -> [N, C].

    torch's binary_cross_entropy clamps each log at -100, so s = 0 or 1 stays finite.
    """
    scale = (targets - scores).abs().pow(beta)
    return F.binary_cross_entropy(scores, targets, reduction="none") * scale
