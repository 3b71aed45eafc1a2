import math

import pytest
import torch

from dynatss.config import SolverConfig
from dynatss.engine.lr_schedule import build_lr_scheduler, lr_factor


def step_solver(**changes) -> SolverConfig:
    solver = SolverConfig(
        max_iter=100, base_lr=0.01, schedule="step", steps=[60, 80], gamma=0.1, warmup_iters=10, warmup_factor=1 / 3
    )
    for key, value in changes.items():
        setattr(solver, key, value)
    return solver


def test_linear_warmup_goes_from_factor_to_one():
    solver = step_solver()
    assert lr_factor(0, solver) == pytest.approx(1 / 3)
    assert lr_factor(5, solver) == pytest.approx(1 / 3 + 0.5 * (1 - 1 / 3))
    assert lr_factor(10, solver) == pytest.approx(1.0)
    factors = [lr_factor(i, solver) for i in range(11)]
    assert all(a < b for a, b in zip(factors, factors[1:]))


def test_step_decay_multiplies_by_gamma_at_each_milestone():
    solver = step_solver()
    assert lr_factor(59, solver) == pytest.approx(1.0)
    assert lr_factor(60, solver) == pytest.approx(0.1)
    assert lr_factor(79, solver) == pytest.approx(0.1)
    assert lr_factor(80, solver) == pytest.approx(0.01)
    assert lr_factor(99, solver) == pytest.approx(0.01)


def test_cosine_decays_from_one_to_zero_after_warmup():
    solver = step_solver(schedule="cosine", warmup_iters=0)
    assert lr_factor(0, solver) == pytest.approx(1.0)
    assert lr_factor(50, solver) == pytest.approx(0.5)
    assert lr_factor(100, solver) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(25, solver) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_scheduler_sets_the_optimizer_lr_of_each_iteration():
    solver = step_solver(steps=[3], warmup_iters=2, max_iter=5)
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=solver.base_lr)
    scheduler = build_lr_scheduler(optimizer, solver)
    seen = []
    for _ in range(5):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([solver.base_lr * lr_factor(i, solver) for i in range(5)])
    assert seen[3] == pytest.approx(0.001)
