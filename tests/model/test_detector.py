import pytest
import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from dynatss.errors import DynatssError
from dynatss.model.build import build_detector
from dynatss.model.head import flatten_levels
from dynatss.model.outputs import ATSSOutputs


def expected_level_sizes(height: int, width: int, levels: range) -> list[tuple[int, int]]:
    """Feature-map sizes of stride-2 convs (kernel 3, padding 1) applied repeatedly."""
    sizes, h, w = [], height, width
    for level in range(1, max(levels) + 1):
        h, w = (h + 1) // 2, (w + 1) // 2
        if level in levels:
            sizes.append((h, w))
    return sizes


@pytest.mark.parametrize("backbone", ["resnet18", "mobilenet_v2"])
@pytest.mark.parametrize("min_level", [3, 4])
def test_output_shapes_and_anchor_counts(backbone, min_level, tiny_config):
    cfg = tiny_config(backbone=backbone, min_level=min_level, anchor_ratios=[0.5, 1.0, 2.0])
    model = build_detector(cfg)
    images = torch.randint(0, 256, (2, 3, 64, 96), dtype=torch.uint8)
    outputs = model(images)
    assert isinstance(outputs, ATSSOutputs)
    sizes = expected_level_sizes(64, 96, range(min_level, 8))
    per_level = [h * w * 3 for h, w in sizes]
    assert outputs.num_anchors_per_level == per_level
    a = sum(per_level)
    assert outputs.cls_logits.shape == (2, a, cfg.num_classes)
    assert outputs.box_deltas.shape == (2, a, 4)
    assert outputs.quality_logits.shape == (2, a)
    assert outputs.anchors.shape == (a, 4)
    assert model.strides == [2**level for level in range(min_level, 8)]


def test_uint8_and_float_inputs_agree_and_gradients_flow(tiny_config):
    model = build_detector(tiny_config())
    images = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    a, b = model(images), model(images.float())
    torch.testing.assert_close(a.cls_logits, b.cls_logits)
    (b.cls_logits.sum() + b.box_deltas.sum() + b.quality_logits.sum()).backward()
    assert model.head.scales.grad is not None and model.head.quality_pred.weight.grad is not None


def test_flatten_order_matches_anchors(tiny_config):
    """Deltas that encode each anchor's own centre decode back to it: per-location order agrees."""
    model = build_detector(tiny_config(max_level=5))
    head = model.head
    with torch.no_grad():
        head.box_deltas.weight.zero_()
        head.box_deltas.bias.zero_()
    outputs = model(torch.zeros(1, 3, 64, 96))
    boxes = model.box_coder.decode(outputs.box_deltas, outputs.anchors)
    torch.testing.assert_close(boxes[0], outputs.anchors)
    # A class logit at one location lands at index (y * W + x) of its level.
    cls_map = torch.zeros(1, 3, 2, 3)  # [B, n * C, H, W] with n = 1, C = 3
    cls_map[0, 1, 1, 2] = 1.0  # class 1 at y=1, x=2
    assert flatten_levels(cls_map, 3)[0].nonzero().tolist() == [[1 * 3 + 2, 1]]


def test_head_initialisation(tiny_config):
    cfg = tiny_config(prior_prob=0.01, quality="centerness")
    head = build_detector(cfg).head
    torch.testing.assert_close(
        torch.sigmoid(head.cls_logits.bias), torch.full_like(head.cls_logits.bias, 0.01)
    )
    torch.testing.assert_close(head.scales.data, torch.ones(5))
    assert head.quality == "centerness" and head.quality_pred.out_channels == 1
    assert abs(head.box_deltas.weight.std().item() - 0.01) < 0.002
    assert sum(isinstance(m, nn.GroupNorm) for m in head.modules()) == 2 * cfg.head_convs


def test_frozen_stages_and_frozen_batchnorm(tiny_config):
    body = build_detector(tiny_config(frozen_stages=1)).backbone.body
    for name, parameter in body.named_parameters():
        frozen = name.startswith(("conv1.", "bn1.", "layer1."))
        assert parameter.requires_grad != frozen, name
    assert any(isinstance(m, FrozenBatchNorm2d) for m in body.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in body.modules())

    body = build_detector(tiny_config(frozen_stages=0, frozen_batchnorm=False)).backbone.body
    assert all(p.requires_grad for p in body.parameters())
    assert any(isinstance(m, nn.BatchNorm2d) for m in body.modules())
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in body.modules())


def test_mobilenet_frozen_stages_cover_stride_4(tiny_config):
    body = build_detector(tiny_config(backbone="mobilenet_v2", frozen_stages=1)).backbone.body
    for name, parameter in body.named_parameters():
        assert parameter.requires_grad == (int(name.split(".")[0]) >= 4), name


@pytest.mark.parametrize(
    "overrides",
    [
        {"min_level": 2},
        {"max_level": 6},
        {"head_channels": 96 + 16},
        {"head_channels": 32},
        {"frozen_stages": 5},
        {"backbone": "vgg16"},
    ],
)
def test_bad_config_is_a_user_error(overrides, tiny_config):
    key = next(iter(overrides))
    with pytest.raises(DynatssError, match=key.split("_")[0]):
        build_detector(tiny_config(**overrides))
