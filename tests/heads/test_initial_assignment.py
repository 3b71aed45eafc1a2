"""Issue 12: at initialisation the combined-IoU assignment gives every valid GT a positive with
every head, because each head's first boxes are its anchors (model.box_init "anchor")."""

from __future__ import annotations

import pytest
import torch

from dynatss.assign import atss_assign
from dynatss.boxes import elementwise_box_iou
from dynatss.model.build import build_detector
from dynatss.model.integral import integral, logits_with_mean
from dynatss.model.outputs import GFLOutputs, VFNetOutputs
from tests.heads.conftest import tiny_config

IMAGE = 256


def _scene() -> tuple[torch.Tensor, torch.Tensor]:
    """Two noisy images, each with six GTs of 20-100 px in separate cells of a 3 x 2 grid (sizes and
    places drawn with a fixed seed): no GT can lose its candidates to another."""
    generator = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (2, 3, IMAGE, IMAGE), generator=generator, dtype=torch.uint8)
    cell_w, cell_h = IMAGE / 3, IMAGE / 2
    cells = torch.tensor([[x * cell_w, y * cell_h] for y in range(2) for x in range(3)])  # [6, 2]
    sizes = 20 + torch.rand(2, 6, 2, generator=generator) * 80  # [B, 6, 2], 20-100 px in 85 x 128 cells
    room = torch.tensor([cell_w, cell_h]) - sizes  # [B, 6, 2]
    corners = cells + torch.rand(2, 6, 2, generator=generator) * room
    return images, torch.cat((corners, corners + sizes), dim=-1)  # [B, 6, 4]


def _predicted_boxes(model, outputs) -> torch.Tensor:
    if isinstance(outputs, GFLOutputs):
        return outputs.pred_boxes()
    if isinstance(outputs, VFNetOutputs):
        return outputs.pred_boxes()  # the refined boxes give the VFNet criterion its PIoUs
    return model.box_coder.decode(outputs.box_deltas, outputs.anchors)


def _initial_assignment(head: str, box_init: str):
    torch.manual_seed(0)
    model = build_detector(tiny_config(head, box_init=box_init, anchor_scales=[8.0])).eval()
    images, gt_boxes = _scene()
    with torch.no_grad():
        outputs = model(images)
    pred_boxes = _predicted_boxes(model, outputs)  # [B, A, 4]
    valid = torch.ones(gt_boxes.shape[:2], dtype=torch.bool)
    assignment = atss_assign(outputs.anchors, outputs.num_anchors_per_level, gt_boxes, valid, pred_boxes)
    anchor_match = elementwise_box_iou(pred_boxes, outputs.anchors.expand_as(pred_boxes))  # [B, A]
    return assignment, gt_boxes, anchor_match


@pytest.mark.parametrize("head", ["atss", "gfl", "vfnet"])
def test_every_gt_has_a_positive_at_initialisation(head):
    assignment, gt_boxes, anchor_match = _initial_assignment(head, "anchor")
    positives_per_gt = torch.stack([
        torch.bincount(assignment.gt_index[b][assignment.positive[b]], minlength=gt_boxes.shape[1])
        for b in range(gt_boxes.shape[0])
    ])  # [B, G]
    assert (positives_per_gt >= 1).all(), positives_per_gt
    assert anchor_match.median() > 0.75  # the first predicted boxes are close to the anchors


@pytest.mark.parametrize("head", ["gfl", "vfnet"])
def test_official_initialisation_starts_far_from_the_anchors(head):
    """mmdetection's start (model.box_init "official"): boxes about twice the anchor size."""
    _, _, anchor_match = _initial_assignment(head, "official")
    assert anchor_match.median() < 0.35


@pytest.mark.parametrize("mean", [0.7, 2.0, 4.0, 15.2])
def test_gfl_initial_distributions_have_the_requested_mean(mean):
    logits = logits_with_mean(mean, 16)
    assert float(integral(logits.repeat(4), 16)[0]) == pytest.approx(mean, abs=1e-4)
    with pytest.raises(ValueError):
        logits_with_mean(16.0, 16)
