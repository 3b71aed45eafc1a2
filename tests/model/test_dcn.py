"""Modulated deformable convs (model.dcn_levels, model.head_dcn): they start as the plain convs
they replace, keep the backbone's weights, learn their offsets, and run the same on CUDA."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision import models
from torchvision.ops import deform_conv2d

from dynatss.errors import DynatssError
from dynatss.model.backbone import Backbone
from dynatss.model.build import build_detector
from dynatss.model.dcn import MASK_SCALE, ModulatedDeformConv2d, deform_conv2d_by_sampling, make_deformable


def _deformable_convs(module: nn.Module) -> list[ModulatedDeformConv2d]:
    return [m for m in module.modules() if isinstance(m, ModulatedDeformConv2d)]


@pytest.mark.parametrize(
    "stride,dilation,groups,bias", [(1, 1, 1, True), (2, 1, 1, False), (1, 2, 4, True), (2, 1, 8, False)]
)
def test_a_deformable_conv_made_from_a_conv_starts_as_that_conv(stride, dilation, groups, bias):
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 24, 3, stride=stride, padding=dilation, dilation=dilation, groups=groups, bias=bias)
    deformable = ModulatedDeformConv2d.from_conv(conv)
    assert deformable.weight is conv.weight and deformable.bias is conv.bias  # the same Parameters
    features = torch.randn(2, 16, 11, 14)
    offsets, masks = deformable.offset_mask(features)
    assert offsets.shape == (2, 18, *conv(features).shape[-2:]) and masks.shape == (2, 9, *offsets.shape[-2:])
    assert offsets.abs().max() == 0 and torch.all(masks == 1.0)
    torch.testing.assert_close(deformable(features), conv(features), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "stride,padding,dilation,groups", [(1, 1, 1, 1), (2, 1, 1, 1), (1, 2, 2, 2), (2, 0, 1, 4), (1, 1, 1, 8)]
)
def test_the_cpu_sampling_path_is_torchvisions_deform_conv(stride, padding, dilation, groups):
    """Forward and gradients (features, offsets, masks, weight, bias) agree with
    torchvision.ops.deform_conv2d, also for samples that leave the map (offsets of several cells)."""
    generator = torch.Generator().manual_seed(stride + 10 * groups + 100 * dilation)
    features = torch.randn(2, 16, 11, 14, generator=generator)
    weight = torch.randn(24, 16 // groups, 3, 3, generator=generator)
    bias = torch.randn(24, generator=generator)
    out_h = (11 + 2 * padding - 2 * dilation - 1) // stride + 1
    out_w = (14 + 2 * padding - 2 * dilation - 1) // stride + 1
    offsets = 3 * torch.randn(2, 18, out_h, out_w, generator=generator)
    masks = 2 * torch.rand(2, 9, out_h, out_w, generator=generator)
    geometry = dict(stride=(stride, stride), padding=(padding, padding), dilation=(dilation, dilation))
    inputs = [t.clone().requires_grad_() for t in (features, offsets, masks, weight, bias)]
    reference = [t.clone().requires_grad_() for t in (features, offsets, masks, weight, bias)]
    ours = deform_conv2d_by_sampling(*inputs, **geometry)
    theirs = deform_conv2d(reference[0], reference[1], reference[3], reference[4], mask=reference[2], **geometry)
    assert ours.shape == theirs.shape == (2, 24, out_h, out_w)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    upstream = torch.randn(ours.shape, generator=generator)
    ours.backward(upstream)
    theirs.backward(upstream)
    for name, mine, reference_input in zip(("features", "offsets", "masks", "weight", "bias"), inputs, reference):
        scale = reference_input.grad.abs().max().item()
        torch.testing.assert_close(mine.grad, reference_input.grad, rtol=1e-3, atol=1e-4 * scale, msg=name)


def test_offsets_and_masks_change_the_output():
    """Not a plain conv in disguise: a shift of one cell is a shifted conv, a mask logit scales."""
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=False)
    deformable = ModulatedDeformConv2d.from_conv(conv)
    features = torch.randn(1, 4, 9, 9)
    with torch.no_grad():
        deformable.offset_mask.bias[1:18:2] = 1.0  # every kernel point: dx = +1 cell
        shifted = deformable(features)
        torch.testing.assert_close(shifted[..., :-1], conv(features)[..., 1:], rtol=1e-5, atol=1e-5)
        deformable.offset_mask.bias.zero_()
        deformable.offset_mask.bias[18:] = 10.0  # masks -> MASK_SCALE
        torch.testing.assert_close(deformable(features), MASK_SCALE * conv(features), rtol=1e-4, atol=1e-4)


def test_make_deformable_replaces_the_3x3_convs_only():
    resnet50 = models.resnet50(weights=None)
    projection = resnet50.layer3[0].downsample[0]
    assert make_deformable(resnet50.layer3) == 6  # one 3x3 per Bottleneck
    assert resnet50.layer3[0].downsample[0] is projection and isinstance(resnet50.layer3[5].conv2, ModulatedDeformConv2d)
    assert make_deformable(models.resnet18(weights=None).layer4) == 4  # two per BasicBlock


def test_the_dcn_backbone_gives_the_plain_features_with_the_same_weights(tmp_path):
    """The deformable convs keep the loaded weights; with zero offsets and unit masks the features
    are those of the plain backbone."""
    torch.manual_seed(0)
    weights = tmp_path / "resnet18.pth"
    torch.save(models.resnet18(weights=None).state_dict(), weights)
    plain = Backbone(name="resnet18", pretrained=str(weights)).eval()
    dcn = Backbone(name="resnet18", pretrained=str(weights), dcn_levels=(3, 4, 5)).eval()
    assert len(_deformable_convs(dcn)) == 12 and not _deformable_convs(plain)
    # The state dict is the plain one plus the offset/mask predictors.
    extra = set(dcn.state_dict()) - set(plain.state_dict())
    assert set(plain.state_dict()) <= set(dcn.state_dict()) and extra and all(".offset_mask." in k for k in extra)
    images = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        expected, actual = plain(images), dcn(images)
    for level in ("c3", "c4", "c5"):
        torch.testing.assert_close(actual[level], expected[level], rtol=1e-4, atol=1e-4)


def test_gradients_reach_every_offset_predictor(tiny_config):
    torch.manual_seed(0)
    model = build_detector(tiny_config(dcn_levels=[4, 5], head_dcn=True))
    deformable = _deformable_convs(model)
    assert len(deformable) == 8 + 2  # resnet18 layer3-4, and the last conv of both head towers
    assert {type(model.head.cls_tower[-3]), type(model.head.reg_tower[-3])} == {ModulatedDeformConv2d}
    outputs = model(torch.randint(0, 256, (1, 3, 64, 96)).float())
    (outputs.cls_logits.sum() + outputs.box_deltas.pow(2).sum() + outputs.quality_logits.sum()).backward()
    for conv in deformable:
        predictor = conv.offset_mask
        assert predictor.weight.grad is not None and predictor.weight.grad.abs().sum() > 0
        assert predictor.weight.requires_grad and predictor.weight.abs().sum() == 0  # still at its zero start


def test_the_head_keeps_its_initialisation_and_zero_offsets(tiny_config):
    """ATSSHead initialises every Conv2d with N(0, 0.01): the deformable tower conv too, its
    offset/mask predictor not."""
    torch.manual_seed(0)
    head = build_detector(tiny_config(head_dcn=True)).head
    deformable = head.cls_tower[-3]
    assert isinstance(deformable, ModulatedDeformConv2d) and deformable.bias.abs().sum() == 0
    assert 0.005 < deformable.weight.std().item() < 0.015
    assert deformable.offset_mask.weight.abs().sum() == 0 and deformable.offset_mask.bias.abs().sum() == 0


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"backbone": "mobilenet_v2", "dcn_levels": [5]}, "needs a ResNet/ResNeXt backbone"),
        ({"dcn_levels": [2, 3]}, "distinct levels out of"),
        ({"dcn_levels": [5, 5]}, "distinct levels out of"),
        ({"dcn_levels": [3, 4], "frozen_stages": 2}, r"\[3\] lie in stages frozen by model.frozen_stages=2"),
        ({"head": "gfl", "head_dcn": True}, "model.head_dcn is for the ATSS head"),
        ({"head_dcn": True, "head_convs": 0}, "model.head_convs must be >= 1"),
    ],
)
def test_impossible_dcn_settings_are_user_errors(tiny_config, overrides, message):
    with pytest.raises(DynatssError, match=message):
        build_detector(tiny_config(**overrides))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_the_cpu_path(tiny_config, monkeypatch):
    """torchvision's CUDA kernel against the CPU path (grid_sample), forward and backward."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # full float32 convs on both sides
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    torch.manual_seed(0)
    model = build_detector(tiny_config(dcn_levels=[3, 4, 5], head_dcn=True))
    with torch.no_grad():  # non-zero offsets and masks, so the sampling really is deformed
        for conv in _deformable_convs(model):
            conv.offset_mask.weight.normal_(std=0.002)
    images = torch.randint(0, 256, (2, 3, 96, 128)).float()

    def run(device: str) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.to(device).zero_grad()
        outputs = model(images.to(device))
        loss = outputs.cls_logits.sum() + outputs.box_deltas.pow(2).sum()
        loss.backward()
        return outputs.cls_logits.cpu(), [c.offset_mask.weight.grad.cpu() for c in _deformable_convs(model)]

    cpu_logits, cpu_grads = run("cpu")
    cuda_logits, cuda_grads = run("cuda")
    torch.testing.assert_close(cuda_logits, cpu_logits, rtol=1e-3, atol=1e-3)
    for cuda_grad, cpu_grad in zip(cuda_grads, cpu_grads):
        torch.testing.assert_close(cuda_grad, cpu_grad, rtol=1e-2, atol=1e-2 * cpu_grad.abs().max().item())
