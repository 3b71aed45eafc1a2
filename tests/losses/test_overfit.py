"""End to end: a tiny detector with the Dynamic ATSS criterion overfits one synthetic image."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import box_iou

from dynatss.config import AssignConfig, InferenceConfig, LossConfig, ModelConfig
from dynatss.data.batch import Batch
from dynatss.losses.criterion import DetectionCriterion
from dynatss.losses.head_terms import ATSSTerms
from dynatss.model.build import build_detector
from dynatss.model.inference import postprocess_to_original

SIZE = 128


def _scene():
    """A grey image with a red rectangle (class 1) and a blue square (class 0)."""
    image = torch.full((1, 3, SIZE, SIZE), 90, dtype=torch.uint8)
    image[0, :, 30:90, 20:70] = torch.tensor([220, 30, 30], dtype=torch.uint8).view(3, 1, 1)
    image[0, :, 80:116, 84:120] = torch.tensor([30, 30, 220], dtype=torch.uint8).view(3, 1, 1)
    boxes = torch.tensor([[[20.0, 30.0, 70.0, 90.0], [84.0, 80.0, 120.0, 116.0]]])
    return Batch(
        images=image, gt_boxes=boxes, gt_labels=torch.tensor([[1, 0]]),
        gt_valid=torch.ones(1, 2, dtype=torch.bool), ignore_boxes=torch.zeros(1, 0, 4),
        ignore_valid=torch.zeros(1, 0, dtype=torch.bool),
        image_sizes=torch.tensor([[SIZE, SIZE]]), original_sizes=torch.tensor([[SIZE, SIZE]]),
        image_ids=torch.tensor([0]),
    )


@pytest.mark.parametrize("mode,classification,quality", [("dynamic", "qfl", "iou"), ("atss", "focal", "centerness")])
def test_tiny_model_overfits_one_image(mode, classification, quality):
    torch.manual_seed(0)
    model = build_detector(ModelConfig(
        backbone="resnet18", pretrained=None, frozen_stages=0, frozen_batchnorm=True, fpn_channels=64,
        head_channels=64, head_convs=2, num_classes=2, quality=quality, min_level=3, max_level=5,
        anchor_scales=[4.0],
    ))
    criterion = DetectionCriterion(AssignConfig(mode=mode), ATSSTerms(LossConfig(classification=classification), quality=quality))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = _scene()
    steps = 80
    losses = []  # classification + box: the quality BCE has a non-zero floor with soft targets
    for step in range(steps):
        loss = criterion(model(batch.images), batch, progress=step / steps)
        optimizer.zero_grad()
        loss.total.backward()
        optimizer.step()
        losses.append((loss.terms["loss_cls"] + loss.terms["loss_box"]).item())
    assert sum(losses[-5:]) / 5 < 0.3 * sum(losses[:5]) / 5, losses[::10]

    model.eval()
    with torch.no_grad():
        detections = postprocess_to_original(model(batch.images), batch.image_sizes, batch.original_sizes, InferenceConfig())[0]
    for gt_box, gt_label in zip(batch.gt_boxes[0], batch.gt_labels[0]):
        same_class = detections["labels"] == gt_label
        assert same_class.any()
        best = box_iou(detections["boxes"][same_class], gt_box[None]).max().item()
        top_score_box = detections["boxes"][same_class][detections["scores"][same_class].argmax()]
        assert best > 0.7
        assert box_iou(top_score_box[None], gt_box[None]).item() > 0.7, "the best-scored box is found"
