"""The VFNet head: forward shapes, initial distances, refinement as a product, gradient routing;
the detectors built from ModelConfig.head."""

from __future__ import annotations

import pytest
import torch

from dynatss.errors import DynatssError
from dynatss.model.build import build_detector
from dynatss.model.outputs import GFLOutputs, VFNetOutputs
from dynatss.model.vfnet_head import VFNetHead
from tests.heads.conftest import tiny_config

STRIDES = [8, 16]


def _head(**kwargs) -> VFNetHead:
    torch.manual_seed(0)
    return VFNetHead(in_channels=8, num_classes=3, strides=STRIDES, num_convs=1, channels=64, **kwargs)


def test_vfnet_head_forward_shapes_and_initial_boxes():
    head = _head(distance_scale=4.0)
    features = [torch.randn(2, 8, 6, 5), torch.randn(2, 8, 3, 3)]
    cls_logits, initial, refined = head(features)
    with torch.no_grad():
        head.reg_init.weight.zero_()  # no regression: the initial distances are exp(0) x the unit
        _, zero_initial, _ = head(features)
    num_anchors = 6 * 5 + 3 * 3
    assert cls_logits.shape == (2, num_anchors, 3)
    assert initial.shape == refined.shape == (2, num_anchors, 4)
    assert (initial > 0).all() and (refined > 0).all()
    # The unit of the distances is distance_scale x stride (the anchor size, mmdetection's reg_denom).
    torch.testing.assert_close(zero_initial[:, :30], torch.full((2, 30, 4), 4.0 * 8))
    torch.testing.assert_close(zero_initial[:, 30:], torch.full((2, 9, 4), 4.0 * 16))


def test_refined_is_the_detached_initial_times_the_factors():
    head = _head()
    features = [torch.randn(1, 8, 4, 4), torch.randn(1, 8, 2, 2)]
    cls_logits, initial, refined = head(features)
    delta = refined / initial
    # The refinement is a product with positive factors; its loss must not move the initial box
    # through the product (only, scaled by gradient_mul, through the star offsets).
    refined.sum().backward()
    assert head.reg_init.weight.grad is not None
    head.zero_grad()
    head.gradient_mul = 0.0
    cls_logits, initial, refined = head(features)
    refined.sum().backward()
    assert head.reg_init.weight.grad is None or head.reg_init.weight.grad.abs().max() == 0
    assert head.reg_refine.weight.grad.abs().sum() > 0
    assert (delta > 0).all()


def test_cls_and_refinement_depend_on_the_initial_box_through_the_star():
    head = _head(distance_scale=1.0)  # boxes of about one cell: star points inside the maps
    features = [torch.randn(1, 8, 6, 6), torch.randn(1, 8, 3, 3)]
    with torch.no_grad():
        for module in (head.reg_refine, head.cls_logits, head.reg_refine_dconv, head.cls_dconv):
            module.weight.normal_(std=0.1)
        cls_before, _, refined_before = head(features)
        head.reg_init.bias.fill_(0.5)  # larger initial boxes -> the star samples elsewhere
        cls_after, _, refined_after = head(features)
    assert not torch.allclose(cls_before, cls_after)
    assert not torch.allclose(refined_before, refined_after)


@pytest.mark.parametrize("head,output_type", [("gfl", GFLOutputs), ("vfnet", VFNetOutputs)])
def test_built_detector_returns_its_head_outputs(head, output_type):
    torch.manual_seed(0)
    model = build_detector(tiny_config(head))
    outputs = model(torch.zeros(2, 3, 64, 96, dtype=torch.uint8))
    assert isinstance(outputs, output_type)
    num_anchors = 8 * 12 + 4 * 6 + 2 * 3
    assert outputs.cls_logits.shape == (2, num_anchors, 2)
    assert outputs.anchors.shape == (num_anchors, 4)
    assert outputs.num_anchors_per_level == [96, 24, 6] and outputs.strides == [8, 16, 32]
    if head == "gfl":
        assert outputs.reg_distribution.shape == (2, num_anchors, 68)
        assert outputs.quality_logits.shape == (2, num_anchors)
    else:
        assert outputs.initial_ltrb.shape == outputs.refined_ltrb.shape == (2, num_anchors, 4)


@pytest.mark.parametrize("head", ["gfl", "vfnet"])
def test_heads_need_one_anchor_per_location(head):
    with pytest.raises(DynatssError, match="one box per location"):
        build_detector(tiny_config(head, anchor_scales=[4.0, 8.0]))
