"""Frozen BatchNorm folded into the convolutions: same outputs, gradients and state dict."""

from __future__ import annotations

import copy

import pytest
import torch
from torchvision.ops.misc import FrozenBatchNorm2d

from dynatss.config import ModelConfig
from dynatss.model.backbone import Backbone
from dynatss.model.build import build_detector
from dynatss.model.folded_bn import FoldedConv2d, FoldedFrozenBatchNorm2d, fold_frozen_batchnorm

# One backbone per block type: inverted residuals, basic blocks, bottlenecks (ResNeXt's too).
BACKBONES = ("mobilenet_v2", "resnet18", "resnet50")


def _backbone_with_random_statistics(name: str) -> Backbone:
    torch.manual_seed(0)
    backbone = Backbone(name=name, pretrained=None, frozen_stages=1)
    for module in backbone.modules():
        if isinstance(module, FrozenBatchNorm2d):
            channels = module.weight.numel()
            module.weight.copy_(torch.rand(channels) + 0.5)
            module.bias.copy_(torch.randn(channels) * 0.1)
            module.running_mean.copy_(torch.randn(channels) * 0.1)
            module.running_var.copy_(torch.rand(channels) + 0.5)
    return backbone


@pytest.mark.parametrize("name", BACKBONES)
def test_folding_keeps_outputs_and_gradients(name):
    plain = _backbone_with_random_statistics(name)
    folded = copy.deepcopy(plain)
    num_norms = sum(isinstance(m, FrozenBatchNorm2d) for m in plain.modules())
    assert fold_frozen_batchnorm(folded) == num_norms  # every frozen BatchNorm follows a conv
    assert not any(type(m) is FrozenBatchNorm2d for m in folded.modules())
    images = torch.randn(2, 3, 64, 96)
    expected, actual = plain(images), folded(images)
    assert expected.keys() == actual.keys()
    for key in expected:  # float rounding differs; relative to the scale of the map
        scale = float(expected[key].detach().abs().max())
        torch.testing.assert_close(actual[key], expected[key], rtol=1e-4, atol=1e-5 * scale)
    sum(v.square().mean() for v in expected.values()).backward()
    sum(v.square().mean() for v in actual.values()).backward()
    for (key, p_plain), (_, p_folded) in zip(plain.named_parameters(), folded.named_parameters()):
        if p_plain.requires_grad:
            scale = float(p_plain.grad.abs().max())
            torch.testing.assert_close(p_folded.grad, p_plain.grad, rtol=1e-3, atol=1e-4 * scale, msg=key)


def test_state_dict_is_unchanged_and_loads_both_ways():
    plain = _backbone_with_random_statistics("mobilenet_v2")
    folded = copy.deepcopy(plain)
    fold_frozen_batchnorm(folded)
    assert list(folded.state_dict()) == list(plain.state_dict())
    other = Backbone(name="mobilenet_v2", pretrained=None, frozen_stages=1)
    fold_frozen_batchnorm(other)
    other.load_state_dict(plain.state_dict())  # an unfolded checkpoint into a folded model
    images = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(other(images)["c5"], plain(images)["c5"], rtol=1e-4, atol=1e-4)


def test_a_copy_reads_its_own_statistics():
    """The EMA deep-copies the model: its convs must fold the copy's BatchNorms, not the original's."""
    folded = _backbone_with_random_statistics("resnet18")
    fold_frozen_batchnorm(folded)
    twin = copy.deepcopy(folded)
    conv = twin.body.conv1
    assert isinstance(conv, FoldedConv2d) and conv._folded_norm[0] is twin.body.bn1
    images = torch.randn(1, 3, 64, 64)
    before = folded(images)["c5"]
    twin.body.bn1.weight.mul_(2.0)
    torch.testing.assert_close(folded(images)["c5"], before)


def test_detector_backbone_is_folded_and_peers_are_not():
    model = build_detector(ModelConfig(backbone="mobilenet_v2", pretrained=None, num_classes=3, fpn_channels=64,
                                       head_convs=1, head_channels=64, min_level=3, max_level=5))
    norms = [m for m in model.backbone.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert norms and all(isinstance(m, FoldedFrozenBatchNorm2d) for m in norms)
    # A Backbone built directly (experiments/peers.py does) keeps torchvision's modules.
    plain = Backbone(name="mobilenet_v2", pretrained=None)
    assert not any(isinstance(m, FoldedConv2d) for m in plain.modules())
