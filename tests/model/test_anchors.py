import math

import torch

from dynatss.model.anchors import AnchorGenerator


def test_level_anchor_centres_sizes_and_order():
    stride, scale, ratios = 16, 8.0, [1.0, 4.0]
    generator = AnchorGenerator(strides=[stride], scales=[scale], ratios=ratios)
    anchors, counts = generator((32, 48), [(2, 3)], torch.device("cpu"), torch.float32)
    assert counts == [2 * 3 * 2]
    expected = []
    for y in range(2):
        for x in range(3):
            cx, cy = (x + 0.5) * stride, (y + 0.5) * stride
            for ratio in ratios:
                w, h = scale * stride / math.sqrt(ratio), scale * stride * math.sqrt(ratio)
                expected.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    torch.testing.assert_close(anchors, torch.tensor(expected))


def test_levels_concatenate_in_order_and_cache():
    generator = AnchorGenerator(strides=[8, 16], scales=[8.0], ratios=[1.0])
    sizes = [(4, 6), (2, 3)]
    anchors, counts = generator((32, 48), sizes, torch.device("cpu"), torch.float32)
    assert counts == [24, 6] and anchors.shape == (30, 4)
    widths = anchors[:, 2] - anchors[:, 0]
    assert torch.all(widths[:24] == 64) and torch.all(widths[24:] == 128)
    again, _ = generator((32, 48), sizes, torch.device("cpu"), torch.float32)
    assert again is anchors
    double, _ = generator((32, 48), sizes, torch.device("cpu"), torch.float64)
    assert double.dtype == torch.float64
