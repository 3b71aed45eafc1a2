"""The EMA of the weights: the ramped decay against hand-computed values, and what it forgets."""

import math

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from dynatss.engine.state import build_ema, ema_decay_at


def test_the_decay_ramps_up_as_ultralytics():
    updates = torch.tensor([1.0, 25.0, 1000.0])
    # 0.99 x (1 - exp(-1/25)) = 0.99 x 0.0392106 ; 0.99 x (1 - 1/e) = 0.99 x 0.6321206 ; ~0.99
    expected = torch.tensor([0.0388185, 0.6257994, 0.99])
    assert torch.allclose(ema_decay_at(updates, 0.99, 25.0), expected, atol=1e-6)
    assert torch.allclose(ema_decay_at(updates, 0.99, 0.0), torch.full((3,), 0.99))  # tau 0: constant


def _average_of(weights: list[float], decay: float, tau: float, make_ema=build_ema) -> float:
    """The EMA of a one-weight model that takes the values ``weights`` in turn."""
    model = nn.Linear(1, 1, bias=False)
    ema = None
    for value in weights:
        with torch.no_grad():
            model.weight.fill_(value)
        if ema is None:
            ema = make_ema(model, decay, tau)
        ema.update_parameters(model)
    return ema.module.weight.item()


def test_each_update_moves_the_average_by_one_minus_that_updates_decay():
    # The first update copies 4.0; then decay 0.5 x (1 - exp(-k / 2)) for k = 2, 3:
    d2 = 0.5 * (1 - math.exp(-1.0))  # 0.3160603
    d3 = 0.5 * (1 - math.exp(-1.5))  # 0.3884349
    second = d2 * 4.0 + (1 - d2) * 2.0  # 2.6321206
    expected = d3 * second + (1 - d3) * 1.0  # 1.6339726
    assert _average_of([4.0, 2.0, 1.0], decay=0.5, tau=2.0) == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(1.6339726, abs=1e-6)


def test_tau_zero_is_torchs_constant_decay_ema():
    def torch_ema(model: nn.Module, decay: float, _tau: float) -> AveragedModel:
        return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)

    weights = [3.0, -1.0, 0.5, 2.0, 7.0]
    reference = _average_of(weights, 0.9, 0.0, make_ema=torch_ema)
    assert _average_of(weights, 0.9, 0.0) == pytest.approx(reference, abs=1e-6)
    assert reference != pytest.approx(_average_of(weights, 0.9, 2.0), abs=1e-3)  # the ramp does differ


def test_the_ramp_forgets_the_first_weights_that_a_constant_decay_keeps():
    # 250 updates after starting at 1.0 and then 0.0 (a short run's initial weights, then trained ones):
    # a constant 0.99 keeps 0.99^249 = 8 % of the start; the ramp with tau 25 keeps almost none.
    weights = [1.0] + [0.0] * 249
    assert _average_of(weights, 0.99, 0.0) == pytest.approx(0.99**249, rel=1e-4)
    assert _average_of(weights, 0.99, 25.0) < 1e-3


def test_no_ema_without_a_decay():
    assert build_ema(nn.Linear(1, 1), None, 2000.0) is None


def test_integer_buffers_stay_integers_rounded_to_the_nearest():
    # BatchNorm's batch counter goes 1, 2, 3; decay 0.5 x (1 - exp(-k / 2)) at k = 2, 3 moves the
    # average by 0.684 and 0.612: round(1 + 0.684) = 2, round(2 + 0.612) = 3 (truncation: 1, then 2).
    model = nn.BatchNorm1d(1)
    ema = None
    for _ in range(3):
        model(torch.randn(4, 1))
        if ema is None:
            ema = build_ema(model, 0.5, 2.0)
        ema.update_parameters(model)
    assert ema.module.num_batches_tracked.dtype == torch.int64
    assert ema.module.num_batches_tracked.item() == 3
