import math

import torch
from torchvision.models.detection._utils import BoxCoder as TorchvisionBoxCoder

from dynatss.model.box_coder import DEFAULT_SCALE_CLAMP, BoxCoder


def random_boxes(n: int, generator: torch.Generator) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=generator) * 200
    wh = torch.rand(n, 2, generator=generator) * 100 + 1
    return torch.cat((xy, xy + wh), dim=1)


def test_round_trip_batched():
    g = torch.Generator().manual_seed(0)
    coder = BoxCoder()
    anchors = random_boxes(50, g)  # [A, 4]
    boxes = torch.stack([random_boxes(50, g) for _ in range(3)])  # [B, A, 4]
    deltas = coder.encode(boxes, anchors)
    assert deltas.shape == (3, 50, 4)
    torch.testing.assert_close(coder.decode(deltas, anchors), boxes, rtol=1e-5, atol=1e-3)


def test_parity_with_torchvision():
    g = torch.Generator().manual_seed(1)
    weights = (10.0, 10.0, 5.0, 5.0)
    ours = BoxCoder(weights=weights, scale_clamp=DEFAULT_SCALE_CLAMP)
    theirs = TorchvisionBoxCoder(weights, bbox_xform_clip=math.log(1000.0 / 16))
    anchors, boxes = random_boxes(100, g), random_boxes(100, g)
    torch.testing.assert_close(ours.encode(boxes, anchors), theirs.encode_single(boxes, anchors))
    deltas = torch.randn(100, 4, generator=g) * 3
    torch.testing.assert_close(ours.decode(deltas, anchors), theirs.decode_single(deltas, anchors))


def test_decode_clamps_log_scale():
    coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0), scale_clamp=math.log(4.0))
    anchors = torch.tensor([[0.0, 0.0, 10.0, 20.0]])
    boxes = coder.decode(torch.tensor([[[0.0, 0.0, 50.0, 50.0]]]), anchors)  # [1, 1, 4]
    width, height = boxes[0, 0, 2] - boxes[0, 0, 0], boxes[0, 0, 3] - boxes[0, 0, 1]
    torch.testing.assert_close(width, torch.tensor(40.0))
    torch.testing.assert_close(height, torch.tensor(80.0))
    assert torch.isfinite(boxes).all()


def test_zero_deltas_give_anchors():
    anchors = random_boxes(10, torch.Generator().manual_seed(2))
    torch.testing.assert_close(BoxCoder().decode(torch.zeros(2, 10, 4), anchors), anchors.expand(2, 10, 4))
