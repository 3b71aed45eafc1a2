"""Tiny GFL / VFNet models and a one-image scene shared by the head tests (random init: CPU-fast)."""

from __future__ import annotations

import dataclasses

import torch

from dynatss.config import ModelConfig
from dynatss.data.batch import Batch

SCENE_SIZE = 128


def tiny_config(head: str, **overrides) -> ModelConfig:
    """resnet18 (random), FPN P3-P5 of 32 channels, head of 2 convs x 64 channels, 4 x stride anchors."""
    base = ModelConfig(
        backbone="resnet18", pretrained=None, frozen_stages=0, fpn_channels=32, head_channels=64,
        head_convs=2, num_classes=2, min_level=3, max_level=5, anchor_scales=[4.0], head=head,
    )
    return dataclasses.replace(base, **overrides)


def scene() -> Batch:
    """A grey image with a red rectangle (class 1) and a blue square (class 0)."""
    image = torch.full((1, 3, SCENE_SIZE, SCENE_SIZE), 90, dtype=torch.uint8)
    image[0, :, 30:90, 20:70] = torch.tensor([220, 30, 30], dtype=torch.uint8).view(3, 1, 1)
    image[0, :, 80:116, 84:120] = torch.tensor([30, 30, 220], dtype=torch.uint8).view(3, 1, 1)
    return Batch(
        images=image, gt_boxes=torch.tensor([[[20.0, 30.0, 70.0, 90.0], [84.0, 80.0, 120.0, 116.0]]]),
        gt_labels=torch.tensor([[1, 0]]), gt_valid=torch.ones(1, 2, dtype=torch.bool),
        ignore_boxes=torch.zeros(1, 0, 4), ignore_valid=torch.zeros(1, 0, dtype=torch.bool),
        image_sizes=torch.tensor([[SCENE_SIZE, SCENE_SIZE]]),
        original_sizes=torch.tensor([[SCENE_SIZE, SCENE_SIZE]]), image_ids=torch.tensor([0]),
    )

