"""The GFL and VFNet criteria: perfect predictions, no ground truth, crowd regions, assignment modes."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import Tensor
from torchvision.ops import box_iou, generalized_box_iou_loss

from dynatss.config import AssignConfig, LossConfig
from dynatss.losses.criterion import DetectionCriterion
from dynatss.losses.head_terms import GFLTerms, VFNetTerms
from dynatss.losses.positives import assign_positives
from dynatss.model.anchors import AnchorGenerator
from dynatss.model.integral import boxes_to_distances
from dynatss.model.outputs import GFLOutputs, VFNetOutputs
from tests.heads.conftest import scene

STRIDES = [8, 16, 32]
REG_MAX = 16


def _anchors():
    generator = AnchorGenerator(strides=STRIDES, scales=[4.0], ratios=[1.0])
    return generator((128, 128), [(16, 16), (8, 8), (4, 4)], torch.device("cpu"), torch.float32)


def _gfl_outputs(batch, *, perfect: bool, mode: str = "atss") -> GFLOutputs:
    """Random outputs, or outputs whose distributions decode to the (single) GT box at every
    anchor and whose joint score is 1 for the assigned class at the positives, 0 elsewhere."""
    anchors, counts = _anchors()
    num = anchors.shape[0]
    generator = torch.Generator().manual_seed(0)
    cls_logits = torch.randn(1, num, 2, generator=generator)
    distribution = torch.randn(1, num, 4 * (REG_MAX + 1), generator=generator)
    quality = torch.randn(1, num, generator=generator)
    if perfect:
        strides = torch.tensor(STRIDES).repeat_interleave(torch.tensor(counts)).float()[:, None]
        (gt_box,) = batch.gt_boxes[0][batch.gt_valid[0]]
        bins = (boxes_to_distances(anchors, gt_box) / strides).clamp(0, REG_MAX - 0.1)  # [A, 4]
        left = bins.floor()
        probabilities = torch.zeros(num, 4, REG_MAX + 1)
        probabilities.scatter_(-1, left.long()[..., None], (left + 1 - bins)[..., None])
        probabilities.scatter_add_(-1, left.long()[..., None] + 1, (bins - left)[..., None])
        distribution[0] = probabilities.clamp(min=1e-12).log().flatten(1)
        quality = torch.full_like(quality, 30.0)
        outputs = GFLOutputs(cls_logits, distribution, quality, anchors, counts, STRIDES)
        positives = assign_positives(AssignConfig(mode=mode), anchors, counts, batch, outputs.pred_boxes(), 0.5)
        cls_logits = torch.full_like(cls_logits, -30.0)
        cls_logits[positives.image_index, positives.anchor_index, positives.target_labels] = 30.0
    return GFLOutputs(cls_logits, distribution, quality, anchors, counts, STRIDES)


def _single_gt(batch):
    return dataclasses.replace(batch, gt_valid=torch.tensor([[False, True]]))


@pytest.mark.parametrize("mode", ["atss", "dynamic"])
def test_gfl_perfect_prediction_costs_little(mode):
    batch = _single_gt(scene())
    criterion = DetectionCriterion(AssignConfig(mode=mode), GFLTerms(LossConfig(), reg_max=REG_MAX))
    perfect = criterion(_gfl_outputs(batch, perfect=True, mode=mode), batch, progress=0.5)
    random = criterion(_gfl_outputs(batch, perfect=False), batch, progress=0.5)
    assert perfect.stats["num_pos"] > 0 and perfect.stats["mean_piou"] > 0.99
    assert perfect.terms["loss_box"] < 1e-3 and perfect.terms["loss_cls"] < 1e-3
    assert perfect.terms["loss_dfl"] < 0.25 * math.log(2) + 1e-3  # DFL's floor: two-bin entropy <= log 2
    assert perfect.terms["loss_dfl"] < 0.2 * random.terms["loss_dfl"]
    assert perfect.total < 0.1 * random.total


@pytest.mark.parametrize("mode", ["atss", "dynamic"])
def test_vfnet_perfect_prediction_costs_little(mode):
    """Initial and refined boxes equal to the GT at every anchor, IACS 1 at the positives' class and
    0 elsewhere: the box terms vanish (GIoU of identical boxes), VFL is ~0 (q = 1 at the positives)."""
    batch = _single_gt(scene())
    anchors, counts = _anchors()
    num = anchors.shape[0]
    (gt_box,) = batch.gt_boxes[0][batch.gt_valid[0]]
    ltrb = boxes_to_distances(anchors, gt_box)[None]  # [1, A, 4]; some negative: centres outside the GT
    criterion = DetectionCriterion(AssignConfig(mode=mode), VFNetTerms(LossConfig(classification="vfl")))
    generator = torch.Generator().manual_seed(0)
    random = VFNetOutputs(torch.randn(1, num, 2, generator=generator), ltrb.abs() + 5, ltrb.abs() + 9, anchors,
                          counts, STRIDES)
    positives = assign_positives(AssignConfig(mode=mode), anchors, counts, batch,
                                 VFNetOutputs(random.cls_logits, ltrb, ltrb, anchors, counts, STRIDES).pred_boxes(), 0.5)
    cls_logits = torch.full((1, num, 2), -30.0)
    cls_logits[positives.image_index, positives.anchor_index, positives.target_labels] = 30.0
    perfect = criterion(VFNetOutputs(cls_logits, ltrb, ltrb, anchors, counts, STRIDES), batch, progress=0.5)
    worse = criterion(random, batch, progress=0.5)
    assert perfect.stats["num_pos"] > 0 and perfect.stats["mean_piou"] > 0.999
    assert perfect.terms["loss_box"] < 1e-5 and perfect.terms["loss_box_refine"] < 1e-5
    assert perfect.terms["loss_cls"] < 1e-5
    assert perfect.total < 1e-4 < worse.total


@pytest.mark.parametrize("criterion_type", ["gfl", "vfnet"])
def test_no_ground_truth_gives_finite_loss_and_gradients(criterion_type):
    batch = dataclasses.replace(scene(), gt_valid=torch.zeros(1, 2, dtype=torch.bool))
    anchors, counts = _anchors()
    num = anchors.shape[0]
    cls_logits = torch.randn(1, num, 2, requires_grad=True)
    if criterion_type == "gfl":
        box_output = torch.randn(1, num, 4 * (REG_MAX + 1), requires_grad=True)
        outputs = GFLOutputs(cls_logits, box_output, torch.zeros(1, num), anchors, counts, STRIDES)
        criterion = DetectionCriterion(AssignConfig(), GFLTerms(LossConfig(), reg_max=REG_MAX))
    else:
        box_output = (10 * torch.rand(1, num, 4)).requires_grad_()
        outputs = VFNetOutputs(cls_logits, box_output, box_output * 1.1, anchors, counts, STRIDES)
        criterion = DetectionCriterion(AssignConfig(), VFNetTerms(LossConfig(classification="vfl")))
    result = criterion(outputs, batch, progress=0.0)
    assert torch.isfinite(result.total) and result.stats["num_pos"] == 0
    assert result.terms["loss_box"] == 0
    result.total.backward()
    assert cls_logits.grad.abs().sum() > 0 and box_output.grad is not None


@pytest.mark.parametrize("criterion_type", ["gfl", "vfnet"])
def test_crowd_regions_are_left_out_of_the_classification_loss(criterion_type):
    batch = _single_gt(scene())
    crowd = dataclasses.replace(batch, ignore_boxes=torch.tensor([[[0.0, 0.0, 64.0, 64.0]]]),
                                ignore_valid=torch.ones(1, 1, dtype=torch.bool))
    if criterion_type == "gfl":
        outputs = _gfl_outputs(batch, perfect=False)
        criterion = DetectionCriterion(AssignConfig(), GFLTerms(LossConfig(), reg_max=REG_MAX))
    else:
        anchors, counts = _anchors()
        ltrb = 10 * torch.rand(1, anchors.shape[0], 4, generator=torch.Generator().manual_seed(0))
        outputs = VFNetOutputs(torch.zeros(1, anchors.shape[0], 2), ltrb, ltrb, anchors, counts, STRIDES)
        criterion = DetectionCriterion(AssignConfig(), VFNetTerms(LossConfig(classification="vfl")))
    plain, masked = criterion(outputs, batch, 0.0), criterion(outputs, crowd, 0.0)
    assert masked.terms["loss_cls"] < plain.terms["loss_cls"]
    assert masked.terms["loss_box"] == plain.terms["loss_box"]


def test_vfnet_assignment_uses_the_refined_boxes():
    """Dynamic mode: PIoUs come from the refined boxes, so they change the positives; ATSS ignores them."""
    batch = _single_gt(scene())
    anchors, counts = _anchors()
    num = anchors.shape[0]
    gt = batch.gt_boxes[0, 1]
    good = boxes_to_distances(anchors, gt).clamp(min=0.5)[None]  # every anchor predicts the GT
    bad = torch.full((1, num, 4), 2.0)
    cls_logits = torch.zeros(1, num, 2)
    results = {}
    for mode in ("atss", "dynamic"):
        criterion = DetectionCriterion(AssignConfig(mode=mode), VFNetTerms(LossConfig(classification="vfl")))
        for name, refined in (("good", good), ("bad", bad)):
            output = VFNetOutputs(cls_logits, bad, refined, anchors, counts, STRIDES)
            results[mode, name] = criterion(output, batch, 0.0).stats
    assert results["atss", "good"]["num_pos"] == results["atss", "bad"]["num_pos"]
    assert results["atss", "good"]["mean_aiou"] == results["atss", "bad"]["mean_aiou"]
    assert results["dynamic", "good"]["mean_piou"] > 0.9 > results["dynamic", "bad"]["mean_piou"]
    assert results["dynamic", "good"]["num_pos"] != results["dynamic", "bad"]["num_pos"] or (
        results["dynamic", "good"]["mean_aiou"] != results["dynamic", "bad"]["mean_aiou"])


def _dfl_per_positive(distribution: Tensor, target_bins: Tensor) -> Tensor:
    """[P, 4 (REG_MAX + 1)] logits, [P, 4] targets in bins -> [P] DFL averaged over the edges, from
    log-softmax and the two interpolation weights (GFL's Eq. 6)."""
    log_probs = distribution.view(-1, 4, REG_MAX + 1).log_softmax(dim=-1)  # [P, 4, n]
    left = target_bins.floor()
    log_left = log_probs.gather(-1, left.long()[..., None])[..., 0]
    log_right = log_probs.gather(-1, left.long()[..., None] + 1)[..., 0]
    return -((left + 1 - target_bins) * log_left + (target_bins - left) * log_right).mean(dim=-1)


@pytest.mark.parametrize("weighting", ["quality", "uniform"])
def test_gfl_box_and_dfl_weights_are_the_joint_score_or_one(weighting):
    """quality (GFLV2): each positive's GIoU and DFL weigh its highest detached joint score, divided
    by the weights' sum (at least 1); uniform: the plain means over the positives."""
    batch = _single_gt(scene())
    outputs = _gfl_outputs(batch, perfect=False)
    config = LossConfig(box_weighting=weighting)
    terms = DetectionCriterion(AssignConfig(), GFLTerms(config, reg_max=REG_MAX))(outputs, batch, 0.5).terms
    anchors, counts = _anchors()
    positives = assign_positives(AssignConfig(), anchors, counts, batch, outputs.pred_boxes(), 0.5)
    image_index, anchor_index = positives.image_index, positives.anchor_index
    giou = generalized_box_iou_loss(outputs.pred_boxes()[image_index, anchor_index], positives.target_boxes,
                                    reduction="none")  # [P]
    strides = torch.tensor(STRIDES).repeat_interleave(torch.tensor(counts)).float()[anchor_index, None]
    bins = (boxes_to_distances(anchors[anchor_index], positives.target_boxes) / strides).clamp(0, REG_MAX - 0.1)
    dfl = _dfl_per_positive(outputs.reg_distribution[image_index, anchor_index], bins)  # [P]
    quality = outputs.quality_scores()[image_index, anchor_index, None]  # [P, 1]
    joint = outputs.cls_logits.sigmoid()[image_index, anchor_index] * quality  # [P, C]
    weights = joint.amax(dim=-1) if weighting == "quality" else torch.ones(len(giou))
    assert len(giou) > 2 and joint.amax(dim=-1).std() > 0.01
    normaliser = weights.sum().clamp(min=1.0)
    assert terms["loss_box"].item() == pytest.approx(2.0 * ((giou * weights).sum() / normaliser).item(), rel=1e-5)
    assert terms["loss_dfl"].item() == pytest.approx(0.25 * ((dfl * weights).sum() / normaliser).item(), rel=1e-5)


@pytest.mark.parametrize("weighting", ["quality", "uniform"])
def test_vfnet_box_weights_are_each_box_iou_or_one(weighting):
    """quality (VarifocalNet): the initial boxes' GIoU weighs their detached IoU, the refined
    boxes' theirs, each divided by its weights' sum (at least 1); uniform: plain means."""
    batch = _single_gt(scene())
    anchors, counts = _anchors()
    generator = torch.Generator().manual_seed(3)
    gt = batch.gt_boxes[0, 1]
    ltrb = boxes_to_distances(anchors, gt).clamp(min=0.5)[None]  # [1, A, 4]
    initial = ltrb * (0.6 + 0.8 * torch.rand(ltrb.shape, generator=generator))
    refined = ltrb * (0.8 + 0.4 * torch.rand(ltrb.shape, generator=generator))
    outputs = VFNetOutputs(torch.zeros(1, len(anchors), 2), initial, refined, anchors, counts, STRIDES)
    config = LossConfig(classification="vfl", box_weight=1.5, box_weighting=weighting)
    terms = DetectionCriterion(AssignConfig(), VFNetTerms(config))(outputs, batch, 0.5).terms
    positives = assign_positives(AssignConfig(), anchors, counts, batch, outputs.pred_boxes(), 0.5)
    image_index, anchor_index = positives.image_index, positives.anchor_index
    expected = {}
    for name, boxes in (("loss_box", outputs.initial_boxes_at(image_index, anchor_index)),
                        ("loss_box_refine", outputs.pred_boxes()[image_index, anchor_index])):
        giou = generalized_box_iou_loss(boxes, positives.target_boxes, reduction="none")  # [P]
        ious = box_iou(boxes, positives.target_boxes).diagonal()
        weights = ious if weighting == "quality" else torch.ones_like(ious)
        expected[name] = ((giou * weights).sum() / weights.sum().clamp(min=1.0)).item()
    assert len(anchor_index) > 2
    assert terms["loss_box"].item() == pytest.approx(1.5 * expected["loss_box"], rel=1e-5)
    assert terms["loss_box_refine"].item() == pytest.approx(2.0 * expected["loss_box_refine"], rel=1e-5)
