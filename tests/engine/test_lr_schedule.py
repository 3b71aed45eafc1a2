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


def test_learning_rate_scales_linearly_with_the_total_batch():
    """auto_scale_lr: base_lr is the rate at base_batch_size images (the paper: 0.01 at 16)."""
    from dynatss.engine.lr_schedule import scaled_lr

    assert scaled_lr(step_solver(batch_size=16)) == pytest.approx(0.01)
    assert scaled_lr(step_solver(batch_size=8)) == pytest.approx(0.005)
    assert scaled_lr(step_solver(batch_size=64)) == pytest.approx(0.04)
    assert scaled_lr(step_solver(batch_size=8, base_batch_size=8)) == pytest.approx(0.01)
    assert scaled_lr(step_solver(batch_size=8, auto_scale_lr=False)) == pytest.approx(0.01)


def test_constant_warmup_holds_the_factor_until_the_end_of_warmup():
    """The official ATSS code warms up at a constant 1/3 of the rate."""
    solver = step_solver(warmup_method="constant")
    assert [lr_factor(i, solver) for i in (0, 5, 9)] == pytest.approx([1 / 3] * 3)
    assert lr_factor(10, solver) == pytest.approx(1.0)


def test_optimizer_uses_the_scaled_rate_and_the_bias_factor():
    from dynatss.engine.optimizer import build_optimizer

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.GroupNorm(2, 4))
    solver = step_solver(batch_size=4, bias_lr_factor=2.0, warmup_iters=0)
    optimizer = build_optimizer(model, solver)
    scheduler = build_lr_scheduler(optimizer, solver)
    by_id = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    conv, norm = model[0], model[1]
    assert by_id[id(conv.weight)]["lr"] == pytest.approx(0.0025)  # 0.01 x 4 / 16
    assert by_id[id(conv.weight)]["weight_decay"] == pytest.approx(1e-4)
    assert by_id[id(conv.bias)]["lr"] == pytest.approx(0.005) and by_id[id(conv.bias)]["weight_decay"] == 0
    assert by_id[id(norm.weight)]["lr"] == pytest.approx(0.0025) and by_id[id(norm.weight)]["weight_decay"] == 0
    for _ in range(60):  # past the first milestone: every group decays by gamma
        optimizer.step()
        scheduler.step()
    assert by_id[id(conv.bias)]["lr"] == pytest.approx(0.0005)
