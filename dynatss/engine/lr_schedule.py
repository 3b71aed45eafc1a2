"""Learning-rate schedule: linear warm-up, then step decay or cosine decay (paper Sec. IV: 1x schedule).

The schedule is a pure function of the iteration, ``lr_factor(iteration, solver)``, multiplied into
``solver.base_lr`` by a ``LambdaLR``. Being a pure function of the iteration is what makes resume
exact: the scheduler's state is just its step count.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from dynatss.config import SolverConfig


def warmup_factor(iteration: int, solver: SolverConfig) -> float:
    """Linear warm-up from ``warmup_factor`` at iteration 0 to 1 at ``warmup_iters`` (Goyal et al.)."""
    if iteration >= solver.warmup_iters:
        return 1.0
    alpha = iteration / solver.warmup_iters
    return solver.warmup_factor * (1.0 - alpha) + alpha


def decay_factor(iteration: int, solver: SolverConfig) -> float:
    """The decay after warm-up: ``gamma`` per milestone passed ("step"), or half a cosine ("cosine")."""
    if solver.schedule == "step":
        passed = sum(1 for milestone in solver.steps if iteration >= milestone)
        return solver.gamma**passed
    progress = min(iteration, solver.max_iter) / solver.max_iter
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def lr_factor(iteration: int, solver: SolverConfig) -> float:
    """Multiplier of ``base_lr`` used for the optimizer step of ``iteration`` (0-based)."""
    return warmup_factor(iteration, solver) * decay_factor(iteration, solver)


def build_lr_scheduler(optimizer: torch.optim.Optimizer, solver: SolverConfig) -> LambdaLR:
    """A ``LambdaLR`` that is stepped once per iteration, after ``optimizer.step()``."""
    return LambdaLR(optimizer, lambda iteration: lr_factor(iteration, solver))
