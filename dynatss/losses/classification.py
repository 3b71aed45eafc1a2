"""Classification losses on sigmoid logits, element-wise (reduction is the criterion's job).

All take ``logits`` [..., C] and targets of the same shape (the criterion passes [B, A, C]): 0 for
negatives and, at the positive's class, 1 (focal loss, hard target) or its soft target, the PIoU
(QFL and VFL, paper Sec. III.C). They return the un-reduced loss, of the same shape.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import sigmoid_focal_loss

# RetinaNet / ATSS defaults.
FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0
# GFL: beta of the quality focal loss.
QFL_BETA = 2.0
# VarifocalNet defaults.
VFL_ALPHA = 0.75
VFL_GAMMA = 2.0


def focal_loss(logits: Tensor, targets: Tensor, *, alpha: float = FOCAL_ALPHA,
               gamma: float = FOCAL_GAMMA) -> Tensor:
    """Sigmoid focal loss (Lin et al.) with hard 0/1 targets: [..., C] -> [..., C]."""
    return sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=gamma, reduction="none")


def quality_focal_loss(logits: Tensor, targets: Tensor, *, beta: float = QFL_BETA) -> Tensor:
    """QFL (GFL, Li et al.): -|y - sigma|^beta * ((1 - y) log(1 - sigma) + y log sigma).

    The cross entropy takes its general form because the soft targets y are not 1, and the
    modulating factor is the distance of the prediction to its soft target.
    """
    scale = (targets - logits.sigmoid()).abs().pow(beta)
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * scale


def varifocal_loss(logits: Tensor, targets: Tensor, *, alpha: float = VFL_ALPHA,
                   gamma: float = VFL_GAMMA) -> Tensor:
    """VFL (VarifocalNet, Zhang et al.): positives weighted by their target q, negatives by
    alpha * p^gamma. q > 0: -q (q log p + (1 - q) log(1 - p)); q = 0: -alpha p^gamma log(1 - p)."""
    positive = targets > 0
    weight = targets.where(positive, alpha * logits.sigmoid().pow(gamma))
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * weight
