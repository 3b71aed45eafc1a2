"""Distribution focal loss, the integral decoding and QFL on joint scores, against hand values."""

from __future__ import annotations

import math

import torch

from dynatss.losses.dfl import dfl_targets, distribution_focal_loss
from dynatss.losses.score_qfl import quality_focal_loss_on_scores
from dynatss.model.integral import (
    anchor_strides,
    boxes_to_distances,
    distances_to_boxes,
    edge_distributions,
    integral,
)

REG_MAX = 16


def test_dfl_between_two_bins_is_the_interpolated_cross_entropy():
    logits = torch.randn(1, REG_MAX + 1, generator=torch.Generator().manual_seed(0))
    log_p = logits.log_softmax(dim=-1)[0]
    loss = distribution_focal_loss(logits, torch.tensor([2.3]))
    expected = -(0.7 * log_p[2] + 0.3 * log_p[3])
    torch.testing.assert_close(loss, expected.view(1), rtol=1e-5, atol=1e-6)


def test_dfl_is_smallest_for_the_two_bin_distribution_whose_integral_is_the_target():
    target = torch.tensor([4.25])
    best = torch.full((1, REG_MAX + 1), -30.0)
    best[0, 4], best[0, 5] = math.log(0.75), math.log(0.25)
    shifted = best.roll(1, dims=-1)
    assert distribution_focal_loss(best, target) < distribution_focal_loss(shifted, target)
    torch.testing.assert_close(integral(best.repeat(1, 4), REG_MAX), torch.full((1, 4), 4.25))
    # Its minimum is the entropy of (0.75, 0.25), not zero.
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    torch.testing.assert_close(distribution_focal_loss(best, target), torch.tensor([entropy]), atol=1e-5, rtol=0)


def test_dfl_gradcheck_float64():
    logits = torch.randn(5, REG_MAX + 1, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([0.0, 2.3, 7.5, 11.01, REG_MAX - 0.1], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: distribution_focal_loss(x, targets), (logits,))


def test_dfl_targets_are_clamped_inside_the_last_bin():
    targets = dfl_targets(torch.tensor([-1.0, 3.0, 16.0, 40.0]), REG_MAX, eps=0.1)
    torch.testing.assert_close(targets, torch.tensor([0.0, 3.0, 15.9, 15.9]))
    assert torch.isfinite(distribution_focal_loss(torch.zeros(4, REG_MAX + 1), targets)).all()


def test_integral_of_one_hot_bins_is_the_bin():
    logits = torch.full((2, 4, REG_MAX + 1), -1e4)
    bins = torch.tensor([[5, 0, 16, 9], [1, 2, 3, 4]])
    logits.scatter_(-1, bins.unsqueeze(-1), 0.0)
    torch.testing.assert_close(integral(logits.flatten(-2), REG_MAX), bins.float())
    probabilities = edge_distributions(logits.flatten(-2), REG_MAX)
    assert probabilities.shape == (2, 4, REG_MAX + 1)
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(2, 4))


def test_integral_of_uniform_distribution_is_the_middle():
    torch.testing.assert_close(integral(torch.zeros(3, 4 * (REG_MAX + 1)), REG_MAX), torch.full((3, 4), REG_MAX / 2))


def test_distances_and_boxes_round_trip():
    anchors = torch.tensor([[0.0, 0.0, 32.0, 32.0], [40.0, 8.0, 72.0, 40.0]])  # centres (16, 16), (56, 24)
    ltrb = torch.tensor([[[4.0, 5.0, 6.0, 7.0], [1.0, 2.0, 3.0, 4.0]]])
    boxes = distances_to_boxes(anchors, ltrb)
    torch.testing.assert_close(boxes, torch.tensor([[[12.0, 11.0, 22.0, 23.0], [55.0, 22.0, 59.0, 28.0]]]))
    torch.testing.assert_close(boxes_to_distances(anchors, boxes), ltrb)


def test_anchor_strides_follow_the_levels():
    strides = anchor_strides([8, 16, 32], [4, 2, 1], torch.zeros(1))
    torch.testing.assert_close(strides, torch.tensor([8.0, 8, 8, 8, 16, 16, 32]))


def test_qfl_on_scores_hand_value_and_perfect_prediction():
    scores = torch.tensor([[0.6, 0.1]])
    targets = torch.tensor([[0.8, 0.0]])
    expected = torch.tensor([
        [-(0.2**2) * (0.8 * math.log(0.6) + 0.2 * math.log(0.4)), -(0.1**2) * math.log(0.9)],
    ])
    torch.testing.assert_close(quality_focal_loss_on_scores(scores, targets), expected)
    assert quality_focal_loss_on_scores(targets.clamp(min=1e-12), targets).abs().max() < 1e-9
    edge = quality_focal_loss_on_scores(torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]]))
    assert torch.isfinite(edge).all() and (edge > 0).all()
