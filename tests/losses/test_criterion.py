"""DetectionCriterion: wiring of assignment, soft targets, ignore regions and normalisers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import box_iou, generalized_box_iou_loss

from dynatss.assign import atss_assign
from dynatss.config import AssignConfig, LossConfig
from dynatss.data.batch import Batch
from dynatss.errors import DynatssError
from dynatss.losses.classification import quality_focal_loss
from dynatss.losses.criterion import DetectionCriterion
from dynatss.losses.head_terms import ATSSTerms
from dynatss.losses.quality import candidate_iou_targets
from dynatss.model.box_coder import BoxCoder
from dynatss.model.outputs import ATSSOutputs
from tests.assign.grids import make_anchors, well_regressed_case

NUM_CLASSES = 3


def _batch(gt_boxes, gt_labels, gt_valid, ignore_boxes=None):
    batch = gt_boxes.shape[0]
    if ignore_boxes is None:
        ignore_boxes = torch.zeros(batch, 0, 4)
    return Batch(
        images=torch.zeros(batch, 3, 64, 64, dtype=torch.uint8),
        gt_boxes=gt_boxes, gt_labels=gt_labels, gt_valid=gt_valid,
        ignore_boxes=ignore_boxes, ignore_valid=torch.ones(ignore_boxes.shape[:2], dtype=torch.bool),
        image_sizes=torch.tensor([[64, 64]] * batch), original_sizes=torch.tensor([[64, 64]] * batch),
        image_ids=torch.arange(batch),
    )


def _outputs(anchors, counts, batch_size, *, deltas=None, seed=0):
    generator = torch.Generator().manual_seed(seed)
    num_anchors = len(anchors)
    if deltas is None:
        deltas = torch.randn(batch_size, num_anchors, 4, generator=generator) * 0.1
    return ATSSOutputs(
        cls_logits=torch.randn(batch_size, num_anchors, NUM_CLASSES, generator=generator).requires_grad_(),
        box_deltas=deltas.clone().requires_grad_(),
        quality_logits=torch.randn(batch_size, num_anchors, generator=generator).requires_grad_(),
        anchors=anchors, num_anchors_per_level=counts,
    )


@pytest.fixture
def scene():
    anchors, counts = make_anchors(64, 64, strides=(8, 16), scales=(4.0,), dtype=torch.float32)
    gt_boxes = torch.tensor([[[4.0, 6.0, 40.0, 44.0], [30.0, 20.0, 60.0, 50.0]]])
    gt_labels = torch.tensor([[2, 0]])
    gt_valid = torch.ones(1, 2, dtype=torch.bool)
    return anchors, counts, gt_boxes, gt_labels, gt_valid


def _criterion(mode="dynamic", classification="qfl", quality="iou"):
    return DetectionCriterion(AssignConfig(mode=mode), ATSSTerms(LossConfig(classification=classification), quality=quality))


def test_qfl_loss_equals_manual_computation(scene):
    anchors, counts, gt_boxes, gt_labels, gt_valid = scene
    outputs = _outputs(anchors, counts, 1)
    result = _criterion()(outputs, _batch(gt_boxes, gt_labels, gt_valid), progress=0.5)

    coder = BoxCoder()
    pred = coder.decode(outputs.box_deltas.detach(), anchors)
    assignment = atss_assign(anchors, counts, gt_boxes, gt_valid, pred)
    positive = assignment.positive[0]
    targets = torch.zeros(len(anchors), NUM_CLASSES)
    targets[positive, gt_labels[0, assignment.gt_index[0, positive]]] = assignment.pred_ious[0, positive]
    expected = quality_focal_loss(outputs.cls_logits[0].detach(), targets).sum() / positive.sum()
    assert positive.sum() > 0
    assert result.terms["loss_cls"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert result.stats["num_pos"] == positive.sum().item()
    assert result.stats["mean_piou"] == pytest.approx(assignment.pred_ious[0, positive].mean().item(), rel=1e-5)


def test_perfect_regression_gives_zero_box_loss_and_unit_piou(scene):
    anchors, counts, gt_boxes, gt_labels, gt_valid = scene
    # Every anchor regresses exactly onto GT 0: positives of GT 0 have PIoU 1 and zero GIoU loss.
    deltas = BoxCoder().encode(gt_boxes[0, :1].expand(len(anchors), 4), anchors).unsqueeze(0)
    single = (gt_boxes[:, :1], gt_labels[:, :1], gt_valid[:, :1])
    result = _criterion()(_outputs(anchors, counts, 1, deltas=deltas), _batch(*single), progress=0.0)
    assert result.terms["loss_box"].item() == pytest.approx(0.0, abs=1e-5)
    assert result.stats["mean_piou"] == pytest.approx(1.0, abs=1e-5)
    assert torch.isfinite(result.total)


@pytest.mark.parametrize("classification", ["focal", "qfl", "vfl"])
@pytest.mark.parametrize("mode", ["atss", "dynamic", "piou"])
def test_no_ground_truth_gives_finite_loss_and_gradients(classification, mode):
    anchors, counts = make_anchors(64, 64, strides=(8, 16), dtype=torch.float32)
    outputs = _outputs(anchors, counts, 2)
    batch = _batch(torch.zeros(2, 0, 4), torch.zeros(2, 0, dtype=torch.long), torch.zeros(2, 0, dtype=torch.bool))
    result = _criterion(mode, classification)(outputs, batch, progress=0.3)
    result.total.backward()
    assert torch.isfinite(result.total) and result.total.item() > 0
    assert result.stats["num_pos"] == 0
    assert outputs.box_deltas.grad is not None and outputs.quality_logits.grad is not None


def test_crowd_region_removes_anchors_from_classification_loss(scene):
    anchors, counts, gt_boxes, gt_labels, gt_valid = scene
    outputs = _outputs(anchors, counts, 1)
    plain = _criterion()(outputs, _batch(gt_boxes[:, :1], gt_labels[:, :1], gt_valid[:, :1]), 0.5)
    crowd = torch.tensor([[[0.0, 0.0, 64.0, 64.0]]])  # the whole image: every negative is ignored
    ignored = _criterion()(outputs, _batch(gt_boxes[:, :1], gt_labels[:, :1], gt_valid[:, :1], crowd), 0.5)
    assert ignored.terms["loss_cls"] < plain.terms["loss_cls"]
    assert ignored.stats["num_pos"] == plain.stats["num_pos"] > 0  # positives are kept


def test_centerness_branch_trains_on_centerness_and_iou_branch_on_piou(scene):
    anchors, counts, gt_boxes, gt_labels, gt_valid = scene
    deltas = BoxCoder().encode(gt_boxes[0, :1].expand(len(anchors), 4), anchors).unsqueeze(0)
    outputs = _outputs(anchors, counts, 1, deltas=deltas)
    outputs = outputs._replace(quality_logits=torch.full((1, len(anchors)), 30.0))  # sigmoid ~ 1
    single = _batch(gt_boxes[:, :1], gt_labels[:, :1], gt_valid[:, :1])
    iou = _criterion(quality="iou")(outputs, single, 0.5)
    centerness = _criterion(quality="centerness")(outputs, single, 0.5)
    assert iou.terms["loss_quality"].item() == pytest.approx(0.0, abs=1e-4)  # PIoU is 1 everywhere
    assert centerness.terms["loss_quality"].item() > 0.1  # centerness < 1 off the exact centre


def test_schedules_change_the_assignment_weights(scene):
    anchors, counts, gt_boxes, gt_labels, gt_valid = scene
    outputs = _outputs(anchors, counts, 1, seed=3)
    batch = _batch(gt_boxes, gt_labels, gt_valid)
    up = DetectionCriterion(AssignConfig(mode="dynamic", pred_schedule="up"), ATSSTerms(LossConfig(), quality="iou"))
    plain_atss = _criterion(mode="atss")
    # D_up at the very start weighs PIoU by 0: the same positives as plain ATSS.
    assert up(outputs, batch, 0.0).stats["num_pos"] == plain_atss(outputs, batch, 0.0).stats["num_pos"]


def _loss_config(**kwargs) -> LossConfig:
    return LossConfig(classification="qfl", **kwargs)


def test_candidate_iou_targets_by_hand():
    """Two anchors, one GT of 2 candidates (+ a padding GT): the positive keeps its own PIoU, the other
    candidate gets its predicted box's IoU with the GT, a non-candidate stays untrained (-1)."""
    pred_boxes = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 5.0, 10.0], [50.0, 50.0, 60.0, 60.0]]])
    gt_boxes = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 1.0, 1.0]]])
    gt_valid = torch.tensor([[True, False]])
    candidates = torch.tensor([[[0, 1], [2, 2]]])  # the padding GT's candidates must not count
    positive_ious = torch.tensor([[0.7, -1.0, -1.0]])  # anchor 0 is a positive with PIoU 0.7
    targets = candidate_iou_targets(candidates, pred_boxes, gt_boxes, gt_valid, positive_ious)
    torch.testing.assert_close(targets, torch.tensor([[0.7, 0.5, -1.0]]))


def test_candidate_iou_targets_take_the_best_gt_of_a_shared_candidate():
    pred_boxes = torch.tensor([[[0.0, 0.0, 10.0, 10.0]]])
    gt_boxes = torch.tensor([[[0.0, 0.0, 10.0, 20.0], [0.0, 0.0, 10.0, 40.0]]])  # IoUs 0.5 and 0.25
    candidates = torch.tensor([[[0], [0]]])
    targets = candidate_iou_targets(candidates, pred_boxes, gt_boxes, torch.ones(1, 2, dtype=torch.bool),
                                    torch.full((1, 1), -1.0))
    torch.testing.assert_close(targets, torch.tensor([[0.5]]))


def test_quality_targets_on_candidates_average_the_bce_over_every_candidate(scene):
    anchors, counts, gt_boxes, gt_labels, gt_valid = scene
    outputs = _outputs(anchors, counts, 1, seed=5)
    batch = _batch(gt_boxes, gt_labels, gt_valid)
    criterion = DetectionCriterion(AssignConfig(mode="dynamic"), ATSSTerms(_loss_config(quality_targets="candidates"), quality="iou"))
    result = criterion(outputs, batch, progress=0.5)

    pred = BoxCoder().decode(outputs.box_deltas.detach(), anchors)  # [1, A, 4]
    assignment = atss_assign(anchors, counts, gt_boxes, gt_valid, pred)
    best = torch.full((len(anchors),), -1.0)
    for g in range(2):  # slow reference: a loop over GTs and their candidates
        for anchor in assignment.candidates[0, g].tolist():
            iou = box_iou(pred[0, anchor : anchor + 1], gt_boxes[0, g : g + 1]).item()
            best[anchor] = max(best[anchor].item(), iou)
    positive = assignment.positive[0]
    best[positive] = assignment.pred_ious[0, positive]
    trained = best >= 0
    expected = F.binary_cross_entropy_with_logits(outputs.quality_logits[0, trained].detach(), best[trained])
    assert trained.sum() > positive.sum() > 0
    assert result.terms["loss_quality"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_quality_targets_on_candidates_need_an_iou_branch():
    with pytest.raises(DynatssError, match="model.quality = iou"):
        DetectionCriterion(AssignConfig(), ATSSTerms(_loss_config(quality_targets="candidates"), quality="centerness"))


def test_uniform_box_weighting_is_the_mean_giou_loss_of_the_positives(scene):
    anchors, counts, gt_boxes, gt_labels, gt_valid = scene
    outputs = _outputs(anchors, counts, 1, seed=7)
    batch = _batch(gt_boxes, gt_labels, gt_valid)
    uniform = DetectionCriterion(AssignConfig(mode="dynamic"), ATSSTerms(_loss_config(box_weighting="uniform"), quality="iou"))
    weighted = _criterion()
    coder = BoxCoder()
    pred = coder.decode(outputs.box_deltas.detach(), anchors)
    assignment = atss_assign(anchors, counts, gt_boxes, gt_valid, pred)
    positive = assignment.positive[0]
    targets = gt_boxes[0, assignment.gt_index[0, positive]]
    giou = generalized_box_iou_loss(pred[0, positive], targets, reduction="none")  # [P]
    piou = assignment.pred_ious[0, positive]
    box_weight = LossConfig().box_weight
    assert uniform(outputs, batch, 0.5).terms["loss_box"].item() == pytest.approx(
        box_weight * giou.mean().item(), rel=1e-5)
    assert weighted(outputs, batch, 0.5).terms["loss_box"].item() == pytest.approx(
        box_weight * ((giou * piou).sum() / piou.sum()).item(), rel=1e-5)


def test_rejected_candidates_can_be_trained_towards_zero():
    pred_boxes = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 5.0, 10.0], [50.0, 50.0, 60.0, 60.0]]])
    gt_boxes = torch.tensor([[[0.0, 0.0, 10.0, 10.0]]])
    targets = candidate_iou_targets(torch.tensor([[[0, 1]]]), pred_boxes, gt_boxes, torch.ones(1, 1, dtype=torch.bool),
                                    torch.tensor([[0.7, -1.0, -1.0]]), rejected="zero")
    torch.testing.assert_close(targets, torch.tensor([[0.7, 0.0, -1.0]]))


def test_quality_targets_on_all_anchors_are_qfl_towards_piou_and_zero(scene):
    """quality_targets=all: QFL of the IoU logits over every anchor (PIoU at the positives, 0
    elsewhere), divided by the number of positives."""
    anchors, counts, gt_boxes, gt_labels, gt_valid = scene
    outputs = _outputs(anchors, counts, 1, seed=9)
    criterion = DetectionCriterion(AssignConfig(mode="dynamic"), ATSSTerms(_loss_config(quality_targets="all"),
                                                                           quality="iou"))
    result = criterion(outputs, _batch(gt_boxes, gt_labels, gt_valid), progress=0.5)
    pred = BoxCoder().decode(outputs.box_deltas.detach(), anchors)
    assignment = atss_assign(anchors, counts, gt_boxes, gt_valid, pred)
    positive = assignment.positive[0]
    targets = torch.where(positive, assignment.pred_ious[0], torch.zeros(len(anchors)))
    logits = outputs.quality_logits[0].detach()
    manual = (targets - logits.sigmoid()).abs() ** 2 * F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    assert result.terms["loss_quality"].item() == pytest.approx((manual.sum() / positive.sum()).item(), rel=1e-5)


def test_the_cap_on_positives_starts_at_max_positives_from():
    """assign.max_positives applies from max_positives_from (training progress) on: before it the
    criterion assigns the paper's positives, from it on the capped ones."""
    anchors, counts, gt_boxes, gt_valid, preds = well_regressed_case()
    anchors, gt_boxes, preds = anchors.float(), gt_boxes.float(), preds.float()
    batch = _batch(gt_boxes, torch.zeros(gt_valid.shape, dtype=torch.long), gt_valid)
    deltas = BoxCoder().encode(preds.flatten(0, 1), anchors.repeat(len(preds), 1)).view_as(preds)  # [B, A, 4]
    outputs = _outputs(anchors, counts, len(preds), deltas=deltas)

    def num_pos(progress: float, **assign) -> float:
        criterion = DetectionCriterion(AssignConfig(mode="dynamic", **assign), ATSSTerms(_loss_config(), quality="iou"))
        return criterion(outputs, batch, progress).stats["num_pos"].item()

    paper, capped = num_pos(0.5), num_pos(0.5, max_positives="atss")
    assert capped < paper  # good predictions give positives beyond ATSS's count
    late = {"max_positives": "atss", "max_positives_from": 0.5}
    assert num_pos(0.0, **late) == num_pos(0.49, **late) == paper
    assert num_pos(0.5, **late) == num_pos(1.0, **late) == capped
