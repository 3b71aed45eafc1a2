"""SGD with momentum; no weight decay on biases, normalisation weights and the per-level scales.

ATSS (maskrcnn-benchmark) trains biases without weight decay; we extend that to every 1-D
parameter (GroupNorm affine weights, the learnable FPN-level scales), which is the usual choice
in modern detectors and keeps the scales from being pulled towards zero. Biases may train at
``bias_lr_factor`` times the rate (the official ATSS code: 2.0).
"""

from __future__ import annotations

import torch
from torch import nn

from dynatss.config import SolverConfig
from dynatss.engine.lr_schedule import scaled_lr


def parameter_groups(model: nn.Module, solver: SolverConfig) -> list[dict]:
    """Three groups: conv/linear weights (decayed), biases (not decayed, lr x bias_lr_factor), and
    the other 1-D parameters (not decayed). Empty groups are left out."""
    lr = scaled_lr(solver)
    weights, biases, others = [], [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        if parameter.ndim > 1:
            weights.append(parameter)
        elif name.endswith(".bias"):
            biases.append(parameter)
        else:
            others.append(parameter)
    groups = [
        {"params": weights, "weight_decay": solver.weight_decay, "lr": lr},
        {"params": biases, "weight_decay": 0.0, "lr": lr * solver.bias_lr_factor},
        {"params": others, "weight_decay": 0.0, "lr": lr},
    ]
    return [group for group in groups if group["params"]]


def build_optimizer(model: nn.Module, solver: SolverConfig) -> torch.optim.SGD:
    """SGD(momentum) over the trainable parameters; the lr schedule scales each group's rate per step."""
    return torch.optim.SGD(parameter_groups(model, solver), lr=scaled_lr(solver), momentum=solver.momentum)
