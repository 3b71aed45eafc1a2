"""The training step fetches everything it logs from the device in one transfer."""

from __future__ import annotations

import warnings

import pytest
import torch

from dynatss.engine.train import _logged_values
from dynatss.losses.positives import LossOutput


def _result(device: str) -> LossOutput:
    total = torch.tensor(2.5, device=device, requires_grad=True) * 1.0
    terms = {"loss_cls": torch.tensor(1.25, device=device), "loss_box": torch.tensor(0.75, device=device)}
    stats = {"num_pos": torch.tensor(12.0, device=device), "mean_piou": torch.tensor(0.5, device=device)}
    return LossOutput(total=total, terms=terms, stats=stats)


def test_every_logged_value_becomes_a_number_under_its_key():
    values = _logged_values(_result("cpu"))
    assert values == {"loss": 2.5, "loss_cls": 1.25, "loss_box": 0.75, "num_pos": 12.0, "mean_piou": 0.5}
    assert all(type(value) is float for value in values.values())


def test_plain_numbers_from_a_custom_criterion_are_accepted():
    result = _result("cpu")
    result.stats["pos_per_gt"] = 3  # a criterion_override may report Python numbers
    assert _logged_values(result)["pos_per_gt"] == 3.0


def test_non_finite_loss_is_reported_not_raised():
    result = _result("cpu")
    result.total = torch.tensor(float("nan"))
    assert _logged_values(result)["loss"] != _logged_values(result)["loss"]  # NaN: the step decides


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (host-device syncs)")
def test_one_sync_on_cuda():
    result = _result("cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _logged_values(result)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) == 1, [str(w.message) for w in syncs]
