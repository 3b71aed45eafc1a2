"""End to end: a tiny GFLV2 / VFNet detector and its criterion overfit one image, with plain ATSS
and with the combined-IoU assignment (the two rows of each Table V pair)."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import box_iou

from dynatss.config import AssignConfig, InferenceConfig, LossConfig
from dynatss.losses.criterion import DetectionCriterion
from dynatss.losses.head_terms import GFLTerms, VFNetTerms
from dynatss.model.build import build_detector
from dynatss.model.inference import postprocess_to_original
from tests.heads.conftest import scene, tiny_config

STEPS = 60


def _criterion(head: str, mode: str, model):
    if head == "gfl":
        return DetectionCriterion(AssignConfig(mode=mode), GFLTerms(LossConfig(), reg_max=model.head.reg_max))
    return DetectionCriterion(AssignConfig(mode=mode), VFNetTerms(LossConfig(classification="vfl", box_weight=1.5)))


@pytest.mark.parametrize("mode", ["atss", "dynamic"])
@pytest.mark.parametrize("head", ["gfl", "vfnet"])
def test_tiny_model_overfits_one_image(head, mode):
    torch.manual_seed(0)
    model = build_detector(tiny_config(head, frozen_stages=4))  # trunk frozen: CPU-fast
    criterion = _criterion(head, mode, model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = scene()
    losses, stats = [], []
    for step in range(STEPS):
        result = criterion(model(batch.images), batch, progress=step / STEPS)
        optimizer.zero_grad()
        result.total.backward()
        optimizer.step()
        losses.append(result.total.item())
        stats.append(result.stats)
    assert set(result.terms) == {"loss_cls", "loss_box", "loss_dfl" if head == "gfl" else "loss_box_refine"}
    assert set(stats[-1]) == {"num_pos", "pos_per_gt", "mean_piou", "mean_aiou"}
    assert stats[-1]["num_pos"] > 0 and stats[-1]["mean_piou"] > stats[0]["mean_piou"]
    assert sum(losses[-5:]) / 5 < 0.4 * sum(losses[:5]) / 5, losses[::10]

    model.eval()
    with torch.no_grad():
        outputs = model(batch.images)
        detections = postprocess_to_original(outputs, batch.image_sizes, batch.original_sizes, InferenceConfig())[0]
    for gt_box, gt_label in zip(batch.gt_boxes[0], batch.gt_labels[0]):
        same_class = detections["labels"] == gt_label
        assert same_class.any()
        top_box = detections["boxes"][same_class][detections["scores"][same_class].argmax()]
        assert box_iou(top_box[None], gt_box[None]).item() > 0.6, "the best-scored box finds the GT"
