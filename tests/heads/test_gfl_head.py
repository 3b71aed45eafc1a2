"""The GFLV2 head: DGQP statistics, gradients and score range; forward shapes; box decoding."""

from __future__ import annotations

import torch

from dynatss.model.gfl_head import DistributionGuidedQualityPredictor, GFLHead, distribution_statistics
from dynatss.model.integral import integral
from dynatss.model.outputs import GFLOutputs

REG_MAX = 16
TOPK = 4


def test_dgqp_statistics_are_the_sorted_topk_and_their_mean():
    logits = torch.randn(2, 3, 4 * (REG_MAX + 1), generator=torch.Generator().manual_seed(0))
    stats = distribution_statistics(logits, REG_MAX, TOPK)
    assert stats.shape == (2, 3, 4 * (TOPK + 1))
    per_edge = stats.view(2, 3, 4, TOPK + 1)
    top, mean = per_edge[..., :TOPK], per_edge[..., TOPK]
    assert (top[..., :-1] >= top[..., 1:]).all(), "top-k sorted descending"
    torch.testing.assert_close(mean, top.mean(-1))
    probabilities = logits.view(2, 3, 4, REG_MAX + 1).softmax(-1)
    torch.testing.assert_close(top[..., 0], probabilities.amax(-1))
    torch.testing.assert_close(top, probabilities.sort(-1, descending=True).values[..., :TOPK])


def test_dgqp_scores_lie_in_zero_one_and_get_gradients():
    torch.manual_seed(0)
    dgqp = DistributionGuidedQualityPredictor(reg_max=REG_MAX, topk=TOPK, channels=64)
    assert [m.weight.shape for m in dgqp.mlp if isinstance(m, torch.nn.Linear)] == [(64, 20), (1, 64)]
    logits = (3 * torch.randn(2, 5, 4 * (REG_MAX + 1))).requires_grad_()
    quality = dgqp(logits)
    assert quality.shape == (2, 5)
    factor = quality.sigmoid()
    assert ((factor > 0) & (factor < 1)).all()
    factor.sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0, "the DGQP trains the distributions too"
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in dgqp.parameters())


def test_sharper_distributions_give_different_quality():
    """The DGQP sees the shape of the distributions, not just the decoded distance."""
    torch.manual_seed(0)
    dgqp = DistributionGuidedQualityPredictor(reg_max=REG_MAX, topk=TOPK, channels=8)
    with torch.no_grad():
        for module in dgqp.mlp:
            if isinstance(module, torch.nn.Linear):
                module.weight.normal_()
    sharp = torch.full((1, 1, 4, REG_MAX + 1), -20.0)
    sharp[..., 5] = 0.0
    flat = torch.zeros(1, 1, 4, REG_MAX + 1)
    flat[..., 5] = 0.5  # peaked at the same bin, much flatter
    assert not torch.allclose(dgqp(sharp.flatten(-2)), dgqp(flat.flatten(-2)))


def test_gfl_head_forward_shapes_and_decoding():
    torch.manual_seed(0)
    head = GFLHead(in_channels=8, num_classes=3, num_levels=2, num_convs=1, channels=64)
    features = [torch.randn(2, 8, 6, 5), torch.randn(2, 8, 3, 3)]
    cls_logits, reg_distribution, quality_logits = head(features)
    num_anchors = 6 * 5 + 3 * 3
    assert cls_logits.shape == (2, num_anchors, 3)
    assert reg_distribution.shape == (2, num_anchors, 4 * (REG_MAX + 1))
    assert quality_logits.shape == (2, num_anchors)
    # At initialisation the focal-loss prior holds and the DGQP starts near 0.5.
    torch.testing.assert_close(cls_logits.sigmoid().mean(), torch.tensor(0.01), atol=2e-3, rtol=0)
    torch.testing.assert_close(quality_logits.sigmoid(), torch.full_like(quality_logits, 0.5), atol=0.05, rtol=0)

    anchors = torch.tensor([[0.0, 0.0, 32.0, 32.0]]).repeat(num_anchors, 1)  # centre (16, 16)
    outputs = GFLOutputs(cls_logits, reg_distribution, quality_logits, anchors, [30, 9], [8, 16])
    boxes = outputs.pred_boxes()
    distances = integral(reg_distribution, REG_MAX)
    torch.testing.assert_close(boxes[0, 0], torch.cat((16 - 8 * distances[0, 0, :2], 16 + 8 * distances[0, 0, 2:])))
    torch.testing.assert_close(boxes[1, -1], torch.cat((16 - 16 * distances[1, -1, :2], 16 + 16 * distances[1, -1, 2:])))
