"""torchvision peers: our MobileNetV2-FPN under FCOS / RetinaNet, outputs converted to our detection format."""

from __future__ import annotations

import pytest
import torch

from dynatss.config import load_config
from dynatss.data.batch import Batch
from experiments.ablation import BASE_CONFIG
from experiments.peers import (
    LOSS_KEYS,
    build_backbone_fpn,
    build_peer,
    detect,
    peer_inputs,
    to_original_pixels,
)

NUM_CLASSES = 3


def _config(**inference):
    overrides = ["model.pretrained=null", f"model.num_classes={NUM_CLASSES}", "model.fpn_channels=32",
                 "model.head_convs=1", "model.head_channels=32", "data.size_divisibility=32",
                 "model.anchor_scales=[4.0]"]  # as train_peer resolves the recipe's "auto" from the data
    overrides += [f"inference.{key}={value}" for key, value in inference.items()]
    return load_config(BASE_CONFIG, overrides)


def _batch() -> Batch:
    """Two images resized to 64x96 and 96x64, padded to 96x96; originals twice / 1.5 times larger."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2, 3, 96, 96), dtype=torch.uint8, generator=generator)
    return Batch(
        images=images,
        gt_boxes=torch.tensor([[[10.0, 10.0, 40.0, 50.0], [0, 0, 0, 0]], [[5.0, 20.0, 60.0, 90.0], [30, 30, 50, 60]]]),
        gt_labels=torch.tensor([[2, 0], [0, 1]]),
        gt_valid=torch.tensor([[True, False], [True, True]]),
        ignore_boxes=torch.zeros(2, 1, 4),
        ignore_valid=torch.zeros(2, 1, dtype=torch.bool),
        image_sizes=torch.tensor([[64, 96], [96, 64]]),
        original_sizes=torch.tensor([[128, 192], [144, 96]]),
        image_ids=torch.tensor([7, 8]),
    )


def test_inputs_crop_padding_and_drop_padded_gts():
    images, targets = peer_inputs(_batch())
    assert [tuple(image.shape) for image in images] == [(3, 64, 96), (3, 96, 64)]
    assert all(0.0 <= float(image.min()) and float(image.max()) <= 1.0 for image in images)
    assert targets[0]["boxes"].tolist() == [[10.0, 10.0, 40.0, 50.0]] and targets[0]["labels"].tolist() == [2]
    assert targets[1]["labels"].tolist() == [0, 1]


def test_boxes_are_scaled_to_original_pixels():
    detections = [{"boxes": torch.tensor([[10.0, 20.0, 30.0, 40.0]]), "scores": torch.tensor([0.9]),
                   "labels": torch.tensor([1])}] * 2
    results = to_original_pixels(detections, torch.tensor([[64, 96], [96, 64]]), torch.tensor([[128, 192], [144, 96]]))
    assert results[0]["boxes"].tolist() == [[20.0, 40.0, 60.0, 80.0]]
    assert results[1]["boxes"].tolist() == [[15.0, 30.0, 45.0, 60.0]]
    assert results[1]["labels"].tolist() == [1]


def test_backbone_fpn_gives_p3_to_p5_or_p3_to_p7_as_our_neck():
    p5 = build_backbone_fpn(load_config(BASE_CONFIG, ["model.pretrained=null", "model.max_level=5"]).model)
    p7 = build_backbone_fpn(load_config(BASE_CONFIG, ["model.pretrained=null", "model.max_level=7"]).model)
    shapes = [(8, 12), (4, 6), (2, 3)]
    assert [tuple(f.shape[-2:]) for f in p5(torch.zeros(1, 3, 64, 96)).values()] == shapes
    assert [tuple(f.shape[-2:]) for f in p7(torch.zeros(1, 3, 64, 96)).values()] == [*shapes, (1, 2), (1, 1)]


@pytest.mark.parametrize("name", ["fcos", "retinanet"])
def test_peer_trains_and_detects_in_our_format(name):
    torch.manual_seed(0)
    model = build_peer(name, _config(score_threshold=0.0, max_detections=20))
    batch = _batch()
    model.train()
    losses = model(*peer_inputs(batch))
    assert {"classification", "bbox_regression"} <= set(losses) <= set(LOSS_KEYS)
    assert all(torch.isfinite(value) for value in losses.values())
    results = detect(model, batch)
    assert len(results) == 2
    for result, (height, width) in zip(results, batch.original_sizes.tolist()):
        boxes = result["boxes"]
        assert boxes.shape[1:] == (4,) and 0 < len(boxes) <= 20
        # Boxes were clipped to the resized image, so in original pixels they fill at most the original.
        assert float(boxes[:, 0::2].max()) <= width + 1e-3 and float(boxes[:, 1::2].max()) <= height + 1e-3
        assert float(boxes.min()) >= 0.0
        assert result["labels"].dtype == torch.int64
        assert set(result["labels"].tolist()) <= set(range(NUM_CLASSES))
    with torch.no_grad():  # the same detections before conversion: scaled by original / resized size
        raw = model(peer_inputs(batch)[0])
    assert torch.allclose(results[0]["boxes"], raw[0]["boxes"] * 2.0)
    assert torch.allclose(results[1]["boxes"], raw[1]["boxes"] * 1.5)
