"""SGD with momentum; no weight decay on biases, normalisation weights and the per-level scales.

ATSS (maskrcnn-benchmark) trains biases without weight decay; we extend that to every 1-D
parameter (GroupNorm affine weights, the learnable FPN-level scales), which is the usual choice
in modern detectors and keeps the scales from being pulled towards zero.
"""

from __future__ import annotations

import torch
from torch import nn

from dynatss.config import SolverConfig


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: weights of convs/linears (decayed) and 1-D parameters (not decayed)."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, solver: SolverConfig) -> torch.optim.SGD:
    """SGD(momentum) over the trainable parameters; the lr is set per step by the lr schedule."""
    return torch.optim.SGD(
        parameter_groups(model, solver.weight_decay), lr=solver.base_lr, momentum=solver.momentum
    )
