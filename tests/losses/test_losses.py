"""Each loss against hand-computed values, its gradient (gradcheck, float64), and edge cases."""

from __future__ import annotations

import math

import pytest
import torch

from dynatss.losses.box import weighted_giou_loss
from dynatss.losses.classification import focal_loss, quality_focal_loss, varifocal_loss
from dynatss.losses.quality import centerness_targets, quality_loss

LN2 = math.log(2.0)


def test_focal_loss_hand_computed():
    logits = torch.zeros(1, 2, dtype=torch.float64)  # p = 0.5
    targets = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    loss = focal_loss(logits, targets, alpha=0.25, gamma=2.0)
    assert loss[0, 0].item() == pytest.approx(0.25 * 0.5**2 * LN2)
    assert loss[0, 1].item() == pytest.approx(0.75 * 0.5**2 * LN2)


def test_quality_focal_loss_hand_computed():
    logits = torch.tensor([[0.0, 0.0, math.log(0.6 / 0.4)]], dtype=torch.float64)
    targets = torch.tensor([[0.6, 0.0, 0.6]], dtype=torch.float64)
    loss = quality_focal_loss(logits, targets, beta=2.0)
    assert loss[0, 0].item() == pytest.approx(0.1**2 * LN2)  # |0.6 - 0.5|^2 * general BCE (= ln 2)
    assert loss[0, 1].item() == pytest.approx(0.5**2 * LN2)  # negative: sigma^2 * -log(1 - sigma)
    assert loss[0, 2].item() == pytest.approx(0.0, abs=1e-12)  # prediction equal to its soft target


def test_varifocal_loss_hand_computed():
    logits = torch.zeros(1, 2, dtype=torch.float64)
    targets = torch.tensor([[0.6, 0.0]], dtype=torch.float64)
    loss = varifocal_loss(logits, targets, alpha=0.75, gamma=2.0)
    assert loss[0, 0].item() == pytest.approx(0.6 * LN2)  # q * BCE(0.5, 0.6), BCE = ln 2 at p = 0.5
    assert loss[0, 1].item() == pytest.approx(0.75 * 0.5**2 * LN2)


def test_positive_weighting_differs_between_qfl_and_vfl():
    """VFL weights a positive by its target; QFL by its distance to the target."""
    logits = torch.tensor([[2.0]], dtype=torch.float64)
    high, low = torch.tensor([[0.9]], dtype=torch.float64), torch.tensor([[0.3]], dtype=torch.float64)
    bce_high = torch.nn.functional.binary_cross_entropy_with_logits(logits, high)
    assert varifocal_loss(logits, high).item() == pytest.approx(0.9 * bce_high.item())
    assert quality_focal_loss(logits, high) < quality_focal_loss(logits, low)  # sigma(2) = 0.88 is near 0.9


@pytest.mark.parametrize("loss_fn", [focal_loss, quality_focal_loss, varifocal_loss])
def test_classification_gradcheck(loss_fn):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    targets = torch.zeros(4, 3, dtype=torch.float64)
    targets[0, 1], targets[2, 0] = 0.7, 0.2
    if loss_fn is focal_loss:
        targets = (targets > 0).double()
    assert torch.autograd.gradcheck(lambda x: loss_fn(x, targets).sum(), (logits,))


def test_giou_loss_hand_computed():
    pred = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0]], dtype=torch.float64)
    target = torch.tensor([[2.0, 0.0, 3.0, 1.0], [0.0, 0.0, 2.0, 2.0]], dtype=torch.float64)
    # Disjoint unit squares: IoU 0, hull 3, union 2 -> GIoU = -1/3, loss 4/3. Identical: loss 0.
    weights = torch.tensor([0.5, 1.0], dtype=torch.float64)
    assert weighted_giou_loss(pred, target, weights).item() == pytest.approx(0.5 * 4 / 3)


def test_giou_gradcheck():
    pred = torch.tensor([[0.0, 0.0, 1.5, 1.2], [1.0, 1.0, 4.0, 3.0]], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([[0.5, 0.2, 2.0, 1.0], [0.0, 0.0, 3.0, 3.5]], dtype=torch.float64)
    weights = torch.tensor([0.3, 0.8], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda p: weighted_giou_loss(p, target, weights), (pred,))


def test_centerness_targets():
    gt = torch.tensor([[0.0, 0.0, 4.0, 4.0], [0.0, 0.0, 4.0, 4.0]], dtype=torch.float64)
    anchors = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 1.0, 2.0, 3.0]], dtype=torch.float64)
    # Centres (2, 2): 1. (1, 2): l=1, r=3, t=b=2 -> sqrt(1/3).
    targets = centerness_targets(anchors, gt)
    torch.testing.assert_close(targets, torch.tensor([1.0, math.sqrt(1 / 3)], dtype=torch.float64))


def test_quality_loss_hand_computed_and_gradcheck():
    logits = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([0.2, 0.9], dtype=torch.float64)
    assert quality_loss(logits, targets).item() == pytest.approx(2 * LN2)
    assert torch.autograd.gradcheck(lambda x: quality_loss(x, targets), (logits,))


def test_empty_inputs_give_zero():
    empty = torch.zeros(0, 4, dtype=torch.float64)
    assert weighted_giou_loss(empty, empty, torch.zeros(0, dtype=torch.float64)).item() == 0.0
    assert quality_loss(torch.zeros(0), torch.zeros(0)).item() == 0.0
