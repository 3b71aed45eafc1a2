"""Learning-rate schedule: linear warm-up, then step decay or cosine decay (paper Sec. IV: 1x schedule).

The schedule is a pure function of the iteration, ``lr_factor(iteration, solver)``, multiplied into
each parameter group's initial rate (``scaled_lr``, times ``bias_lr_factor`` for biases) by a
``LambdaLR``. Being a pure function of the iteration is what makes resume
exact: the scheduler's state is just its step count.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from dynatss.config import SolverConfig

# A schedule given in epochs becomes a whole number of tens of steps (easier to read in the logs).
EPOCH_ROUNDING = 10


def scaled_lr(solver: SolverConfig) -> float:
    """The learning rate after warm-up: ``base_lr`` x batch_size / base_batch_size when
    ``auto_scale_lr`` (the linear scaling rule of Goyal et al.), else ``base_lr``."""
    if not solver.auto_scale_lr:
        return solver.base_lr
    return solver.base_lr * solver.batch_size / solver.base_batch_size


def describe_lr(solver: SolverConfig) -> str:
    """One line for the run log: the rate used and where it comes from."""
    if not solver.auto_scale_lr:
        return f"{solver.base_lr:g} (solver.auto_scale_lr false)"
    return (f"{scaled_lr(solver):g} (base_lr {solver.base_lr:g} x batch {solver.batch_size} / "
            f"base_batch_size {solver.base_batch_size})")


def warmup_factor(iteration: int, solver: SolverConfig) -> float:
    """Warm-up multiplier: linear from ``warmup_factor`` at iteration 0 to 1 at ``warmup_iters``
    (Goyal et al.), or ``warmup_factor`` until ``warmup_iters`` ("constant", the official ATSS)."""
    if iteration >= solver.warmup_iters:
        return 1.0
    if solver.warmup_method == "constant":
        return solver.warmup_factor
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
    """Multiplier of the scaled learning rate used for the optimizer step of ``iteration`` (0-based)."""
    return warmup_factor(iteration, solver) * decay_factor(iteration, solver)


def build_lr_scheduler(optimizer: torch.optim.Optimizer, solver: SolverConfig) -> LambdaLR:
    """A ``LambdaLR`` that is stepped once per iteration, after ``optimizer.step()``."""
    return LambdaLR(optimizer, lambda iteration: lr_factor(iteration, solver))


def schedule_in_epochs(solver: SolverConfig, num_images: int) -> tuple[int, list[int]]:
    """(max_iter, steps) of ``solver.epochs`` over ``num_images`` training images.

    max_iter = epochs x images / batch_size, rounded to the nearest ``EPOCH_ROUNDING`` steps and at
    least ``solver.min_iter``; the decay steps are ``solver.step_fractions`` of it.
    """
    assert solver.epochs is not None
    exact = solver.epochs * num_images / solver.batch_size
    max_iter = max(EPOCH_ROUNDING * round(exact / EPOCH_ROUNDING), solver.min_iter, 1)
    return max_iter, [round(fraction * max_iter) for fraction in solver.step_fractions]
