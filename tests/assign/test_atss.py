"""The batched (Dynamic) ATSS assigner against a slow reference, hand-built cases and properties."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from torchvision.ops import box_iou

from dynatss.assign import atss_assign, positive_cap
from dynatss.assign.atss import (
    adaptive_threshold,
    anchor_levels,
    atss_counts,
    candidate_ious,
    candidate_levels,
    centers_inside,
    keep_top,
)
from dynatss.assign.candidates import _stable_smallest, nearest_anchors
from dynatss.config import AssignConfig
from dynatss.model.anchors import AnchorGenerator
from tests.assign.grids import make_anchors, make_grids, random_boxes, well_regressed_case
from tests.assign.reference import reference_assign


@st.composite
def scenarios(draw):
    height = draw(st.integers(16, 160))
    width = draw(st.integers(16, 160))
    strides = draw(st.sampled_from([(8,), (8, 16), (8, 16, 32), (16, 32, 64, 128)]))
    scales = draw(st.sampled_from([(8.0,), (4.0, 8.0), (4.0, 6.0, 8.0)]))
    batch = draw(st.integers(1, 3))
    max_gts = draw(st.integers(0, 12))
    kind = draw(st.sampled_from(["normal", "tiny", "border", "degenerate", "mixed"]))
    topk = draw(st.sampled_from([1, 3, 9]))
    mode = draw(st.sampled_from(["atss", "dynamic", "piou", "weighted"]))
    seed = draw(st.integers(0, 2**31 - 1))
    duplicates = draw(st.booleans())
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    levels = draw(st.sampled_from(["all", "anchor"]))
    max_positives = draw(st.sampled_from(["threshold", "atss"]))
    return height, width, strides, scales, batch, max_gts, kind, topk, mode, seed, duplicates, dtype, levels, max_positives


def _build(height, width, strides, scales, batch, max_gts, kind, seed, duplicates):
    generator = torch.Generator().manual_seed(seed)
    anchors, counts = make_anchors(height, width, strides, scales)
    kinds = ["normal", "tiny", "border", "degenerate"] if kind == "mixed" else [kind]
    gt_boxes = torch.cat(
        [random_boxes(generator, batch * max_gts, height, width, k) for k in kinds]
    ).view(len(kinds), batch, max_gts, 4)
    gt_boxes = gt_boxes.transpose(0, 1).reshape(batch, len(kinds) * max_gts, 4)
    if duplicates and gt_boxes.shape[1] > 1:
        gt_boxes[:, -1] = gt_boxes[:, 0]
    gt_valid = torch.rand(gt_boxes.shape[:2], generator=generator) < 0.8
    # Predicted boxes: anchors moved and resized at random, so PIoUs cover 0..1.
    jitter = torch.randn(batch, len(anchors), 4, generator=generator, dtype=torch.float64) * 6
    pred_boxes = anchors.unsqueeze(0) * 0.7 + jitter
    pred_boxes = torch.cat([pred_boxes[..., :2].minimum(pred_boxes[..., 2:]),
                            pred_boxes[..., :2].maximum(pred_boxes[..., 2:]) + 1], dim=-1)
    return anchors, counts, gt_boxes, gt_valid, pred_boxes


_WEIGHTS = {"atss": (None, 1.0), "dynamic": (1.0, 1.0), "piou": (1.0, 0.0), "weighted": (1.5, 0.5)}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
# One candidate (topk 1, one level): the combined IoU equals the threshold exactly, in float32.
@example((16, 16, (8,), (8.0,), 1, 3, "normal", 1, "dynamic", 45, False, torch.float32, "all", "threshold"))
def test_batched_assigner_equals_reference(scenario):
    height, width, strides, scales, batch, max_gts, kind, topk, mode, seed, duplicates, dtype, levels, max_positives = (
        scenario
    )
    anchors, counts, gt_boxes, gt_valid, pred_boxes = (
        t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t
        for t in _build(height, width, strides, scales, batch, max_gts, kind, seed, duplicates)
    )
    pred_weight, anchor_weight = _WEIGHTS[mode]
    preds = None if pred_weight is None else pred_boxes
    result = atss_assign(
        anchors, counts, gt_boxes, gt_valid, preds, topk=topk,
        pred_weight=pred_weight or 0.0, anchor_weight=anchor_weight, levels=levels, max_positives=max_positives,
        grids=make_grids(height, width, strides, scales),
    )
    expected = reference_assign(
        anchors, counts, len(scales), gt_boxes, gt_valid, preds, topk, pred_weight or 0.0, anchor_weight, levels,
        max_positives,
    )
    atol = 1e-12 if dtype == torch.float64 else 1e-6
    assert torch.equal(result.gt_index, expected[0])
    torch.testing.assert_close(result.anchor_ious, expected[1], rtol=0, atol=atol)
    torch.testing.assert_close(result.pred_ious, expected[2], rtol=0, atol=atol)
    torch.testing.assert_close(result.threshold, expected[3], rtol=0, atol=atol)


def test_stable_smallest_equals_a_stable_sort_with_ties():
    generator = torch.Generator().manual_seed(0)
    distances = torch.randint(0, 6, (50, 30), generator=generator).float() * 0.5  # many exact ties
    distances[0] = 0.0
    expected = distances.sort(dim=-1, stable=True).indices[:, :9]
    assert torch.equal(_stable_smallest(distances, 9), expected)


def test_hand_built_case():
    """One 24x24 GT on an 8x8 grid of stride 8 (anchor size 16): known candidates and positives."""
    anchors, counts = make_anchors(64, 64, strides=(8,), scales=(2.0,))
    gt = torch.tensor([[[16.0, 16.0, 40.0, 40.0]]], dtype=torch.float64)
    result = atss_assign(anchors, counts, gt, torch.ones(1, 1, dtype=torch.bool), topk=9)
    # Candidates: the 3x3 locations around (28, 28): centres 20, 28, 36 on each axis.
    # IoUs: the centre anchor [20,20,36,36] -> 256/576; edge anchors 192/640; corners 144/688.
    ious = torch.tensor([256 / 576] + [192 / 640] * 4 + [144 / 688] * 4, dtype=torch.float64)
    threshold = ious.mean() + ious.std()
    assert result.threshold[0, 0].item() == pytest.approx(threshold.item(), abs=1e-12)
    positives = result.gt_index.view(8, 8) == 0
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[3, 3] = True  # only the centre anchor (IoU 0.444) clears mean + std (about 0.35)
    assert threshold.item() > 192 / 640
    assert torch.equal(positives, expected)
    assert result.anchor_ious.view(8, 8)[3, 3].item() == pytest.approx(256 / 576)


def test_conflict_goes_to_highest_iou():
    anchors, counts = make_anchors(64, 64, strides=(8,), scales=(2.0,))
    big = torch.tensor([12.0, 12.0, 44.0, 44.0], dtype=torch.float64)
    small = torch.tensor([20.0, 20.0, 36.0, 36.0], dtype=torch.float64)  # same centre, IoU 1 with one anchor
    gts = torch.stack([big, small]).unsqueeze(0)
    result = atss_assign(anchors, counts, gts, torch.ones(1, 2, dtype=torch.bool), topk=9)
    centre_anchor = 3 * 8 + 3
    assert result.gt_index[0, centre_anchor].item() == 1
    # Swapping the GT order changes the index but not the winner.
    swapped = atss_assign(anchors, counts, gts.flip(1), torch.ones(1, 2, dtype=torch.bool), topk=9)
    assert swapped.gt_index[0, centre_anchor].item() == 0


def test_zero_pred_ious_give_plain_atss():
    anchors, counts = make_anchors(128, 96, strides=(8, 16, 32), scales=(8.0,))
    generator = torch.Generator().manual_seed(0)
    gt = random_boxes(generator, 20, 128, 96, "normal").view(2, 10, 4)
    valid = torch.ones(2, 10, dtype=torch.bool)
    far_away = torch.tensor([1000.0, 1000.0, 1010.0, 1010.0], dtype=torch.float64).expand(2, len(anchors), 4)
    plain = atss_assign(anchors, counts, gt, valid)
    dynamic = atss_assign(anchors, counts, gt, valid, far_away, pred_weight=1.0, anchor_weight=1.0)
    assert plain.positive.any()
    assert torch.equal(plain.gt_index, dynamic.gt_index)
    torch.testing.assert_close(plain.threshold, dynamic.threshold, rtol=0, atol=0)
    assert (dynamic.pred_ious == 0).all()


def test_properties_of_positives():
    anchors, counts = make_anchors(160, 160, strides=(8, 16, 32), scales=(8.0,))
    generator = torch.Generator().manual_seed(1)
    gt = random_boxes(generator, 3 * 15, 160, 160, "normal").view(3, 15, 4)
    valid = torch.rand(3, 15, generator=generator) < 0.7
    preds = anchors.unsqueeze(0).expand(3, -1, -1) + torch.randn(3, len(anchors), 4, generator=generator,
                                                                 dtype=torch.float64)
    result = atss_assign(anchors, counts, gt, valid, preds)
    b, a = result.positive.nonzero(as_tuple=True)
    g = result.gt_index[b, a]
    assert len(b) > 0
    assert valid[b, g].all(), "padding GTs never get positives"
    centers = (anchors[a, :2] + anchors[a, 2:]) / 2
    boxes = gt[b, g]
    assert ((centers > boxes[:, :2]) & (centers < boxes[:, 2:])).all(), "positives lie inside their GT"
    combined = result.anchor_ious[b, a] + result.pred_ious[b, a]
    assert (combined >= result.threshold[b, g] - 1e-12).all(), "positives clear their GT's threshold"
    assert (result.anchor_ious[~result.positive] == 0).all()
    assert (result.threshold[~valid] == 0).all()


def test_threshold_is_sum_of_means_and_stds_not_std_of_sum():
    anchor_ious = torch.tensor([[[0.1, 0.5, 0.9]]], dtype=torch.float64)
    pred_ious = torch.tensor([[[0.9, 0.5, 0.1]]], dtype=torch.float64)  # their sum has std 0
    threshold = adaptive_threshold(anchor_ious, pred_ious, pred_weight=1.0, anchor_weight=1.0)
    expected = 0.5 + 0.5 + 2 * 0.4  # unbiased std of (0.1, 0.5, 0.9) is 0.4
    assert threshold.item() == pytest.approx(expected)
    weighted = adaptive_threshold(anchor_ious, pred_ious, pred_weight=1.5, anchor_weight=0.5)
    assert weighted.item() == pytest.approx(1.5 * 0.9 + 0.5 * 0.9)


def test_anchor_levels_by_hand():
    # Level 0 (best AIoU 0.2) misses the ATSS threshold mean + std = 0.3167 + 0.2137; level 1 reaches it.
    anchor_ious = torch.tensor([[[0.1, 0.2, 0.1, 0.6, 0.5, 0.4]]], dtype=torch.float64)
    levels = torch.tensor([[[0, 0, 0, 1, 1, 1]]])
    assert anchor_levels(anchor_ious, levels, 2).tolist() == [[[False] * 3 + [True] * 3]]
    # No AIoU reaches mean + std = 0.375 + 0.25: the level of the best AIoU is chosen alone.
    anchor_ious = torch.tensor([[[0.5, 0.5, 0.5, 0.0]]], dtype=torch.float64)
    assert anchor_levels(anchor_ious, torch.tensor([[[0, 0, 0, 1]]]), 2).tolist() == [[[True] * 3 + [False]]]
    # Two levels reach it (0.9 and 0.8 >= 0.42 + 0.35); a level with no candidate is harmless.
    anchor_ious = torch.tensor([[[0.9, 0.1, 0.8, 0.1, 0.1, 0.1, 0.2, 0.2, 0.3]]], dtype=torch.float64)
    levels = torch.tensor([[[0, 0, 1, 1, 1, 2, 2, 2, 2]]])
    assert anchor_levels(anchor_ious, levels, 4).tolist() == [[[True] * 5 + [False] * 4]]
    counts = [64, 16, 4]
    assert candidate_levels(torch.tensor([[[0, 63, 64, 79, 80, 83]]]), counts).tolist() == [[[0, 0, 1, 1, 2, 2]]]


def test_anchor_levels_drop_the_positives_on_other_levels_only():
    """Good predictions from a fine level make it hold positives of large GTs under the paper's rule;
    levels="anchor" removes those and keeps every other positive."""
    anchors, counts, gt, valid, preds = well_regressed_case()
    paper = atss_assign(anchors, counts, gt, valid, preds)
    gated = atss_assign(anchors, counts, gt, valid, preds, levels="anchor")
    assert gated.positive.sum() < paper.positive.sum()
    assert not (gated.positive & ~paper.positive).any()
    plain = atss_assign(anchors, counts, gt, valid)
    b, a = gated.positive.nonzero(as_tuple=True)
    level = candidate_levels(a, counts)
    for image, anchor, lv in zip(b.tolist(), a.tolist(), level.tolist()):  # test-side loop over few positives
        gt_id = gated.gt_index[image, anchor].item()
        plain_levels = candidate_levels(plain.candidates[image, gt_id], counts)
        ious = box_iou(anchors[plain.candidates[image, gt_id]], gt[image, gt_id : gt_id + 1]).flatten()
        assert ious[plain_levels == lv].max() >= min(ious.mean() + ious.std(), ious.max()) - 1e-12
    assert torch.equal(atss_assign(anchors, counts, gt, valid, levels="anchor").gt_index, plain.gt_index)


def test_atss_counts_and_keep_top_by_hand():
    # AIoUs 0.1, 0.2, 0.1, 0.6, 0.5, 0.4: mean + std = 0.3167 + 0.2137 = 0.530, reached by 0.6 alone.
    anchor_ious = torch.tensor([[[0.1, 0.2, 0.1, 0.6, 0.5, 0.4]]], dtype=torch.float64)
    inside = torch.ones(1, 1, 6, dtype=torch.bool)
    assert atss_counts(anchor_ious, inside).tolist() == [[1]]
    # Without the centre inside it gives none, and the count stays 1 so that the GT keeps a positive.
    assert atss_counts(anchor_ious, torch.tensor([[[True] * 3 + [False] * 3]])).tolist() == [[1]]
    # Two of the same value both reach mean + std = 0.3333 + 0.3615.
    assert atss_counts(torch.tensor([[[0.1, 0.8, 0.1, 0.8, 0.1, 0.1]]], dtype=torch.float64),
                       torch.ones(1, 1, 6, dtype=torch.bool)).tolist() == [[2]]
    scores = torch.tensor([[[0.9, 1.3, 0.2, 1.3, 1.1], [0.5, 0.4, 0.3, 0.2, 0.1]]])
    positive = torch.tensor([[[True, True, False, True, True], [False, True, True, True, False]]])
    counts = torch.tensor([[2, 5]])
    # GT 0: the two best positives are candidates 1 and 3 (1.3 each, ties by order); candidate 2's
    # score is not a positive's. GT 1: fewer positives than its count keeps all three.
    kept = keep_top(scores, positive, counts)
    assert kept.tolist() == [[[False, True, False, True, False], [False, True, True, True, False]]]
    assert keep_top(scores, positive, torch.tensor([[1, 1]])).tolist() == [
        [[False, True, False, False, False], [False, True, False, False, False]]]


def test_max_positives_atss_caps_each_gt_at_the_atss_count():
    """Good predictions give combined-IoU positives beyond ATSS's count; max_positives="atss" keeps,
    per GT, ATSS's number of them, the highest combined IoUs, and nothing the paper's rule rejects."""
    anchors, counts, gt, valid, preds = well_regressed_case()
    paper = atss_assign(anchors, counts, gt, valid, preds)
    capped = atss_assign(anchors, counts, gt, valid, preds, max_positives="atss")
    plain = atss_assign(anchors, counts, gt, valid)
    assert not (capped.positive & ~paper.positive).any()
    gt_ids = torch.arange(15).view(1, 15, 1)
    per_gt = {name: (result.gt_index.unsqueeze(1) == gt_ids).sum(-1) for name, result in   # [B, G]
              (("paper", paper), ("capped", capped), ("plain", plain))}
    assert (per_gt["paper"] > per_gt["plain"]).any()  # the case has GTs the cap applies to
    # Before conflicts, ATSS's count of a GT is its candidates at or above mean + std with the centre inside.
    anchor_ious, _ = candidate_ious(anchors, None, gt, plain.candidates)  # [B, G, K]
    atss_count = atss_counts(anchor_ious, centers_inside(anchors, gt, plain.candidates))  # [B, G]
    assert (per_gt["capped"] <= atss_count).all() and (per_gt["plain"] <= atss_count).all()
    assert per_gt["capped"].sum() < per_gt["paper"].sum()
    # Each GT keeps its best combined IoUs: a kept positive beats every dropped one of the same GT
    # that no other GT took.
    combined = capped.anchor_ious + capped.pred_ious  # [B, A] of the kept positives
    for b, g in (per_gt["capped"] < per_gt["paper"]).nonzero().tolist():  # test-side loop over few GTs
        kept = capped.gt_index[b] == g
        dropped = (paper.gt_index[b] == g) & ~kept
        assert combined[b][kept].min() >= (paper.anchor_ious + paper.pred_ious)[b][dropped].max() - 1e-12
    # For plain ATSS it changes nothing.
    assert torch.equal(atss_assign(anchors, counts, gt, valid, max_positives="atss").gt_index, plain.gt_index)


def test_empty_batches_and_images():
    anchors, counts = make_anchors(64, 64, strides=(8, 16))
    none = atss_assign(anchors, counts, torch.zeros(2, 0, 4, dtype=torch.float64),
                       torch.zeros(2, 0, dtype=torch.bool))
    assert none.gt_index.shape == (2, len(anchors)) and not none.positive.any()
    padded = atss_assign(anchors, counts, torch.rand(2, 3, 4, dtype=torch.float64) * 10,
                         torch.zeros(2, 3, dtype=torch.bool))
    assert not padded.positive.any()


def test_level_smaller_than_topk_is_capped():
    anchors, counts = make_anchors(32, 32, strides=(8, 32), scales=(8.0,))  # the stride-32 level has 1 anchor
    candidates = nearest_anchors(anchors, counts, torch.tensor([[[4.0, 4.0, 28.0, 28.0]]], dtype=torch.float64),
                                 topk=9, grids=make_grids(32, 32, strides=(8, 32)))
    assert candidates.shape[-1] == 9 + 1
    assert candidates[0, 0, -1].item() == counts[0]


def test_the_generators_grids_give_the_candidates_of_a_search_over_every_anchor():
    """The window search over the anchor generator's level grids equals the search of every anchor
    of every level (no grids), with several anchors per location and odd feature sizes."""
    generator = AnchorGenerator(strides=[8, 16, 32], scales=[4.0, 8.0], ratios=[0.5, 1.0])
    feature_sizes = [(13, 9), (7, 5), (4, 3)]
    anchors, counts = generator((104, 72), feature_sizes, torch.device("cpu"), torch.float32)
    grids = generator.level_grids(feature_sizes)
    assert [grid.count for grid in grids] == counts and [grid.start for grid in grids] == [0, counts[0], sum(counts[:2])]
    assert (grids[0].height, grids[0].width, grids[0].per_location, grids[0].origin_x, grids[0].stride_y) == \
        (13, 9, 4, 4.0, 8.0)
    boxes = random_boxes(torch.Generator().manual_seed(0), 40, 104, 72, "normal").float().view(2, 20, 4)
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2  # [A, 2]
    gt_centres = (boxes[..., :2] + boxes[..., 2:]) / 2  # [B, G, 2]
    for topk in (1, 4, 9):
        expected, start = [], 0
        for count in counts:  # every anchor of the level, k x 4 anchors per location, stable order
            distances = (centres[None, None, start : start + count] - gt_centres[:, :, None]).square().sum(-1)
            expected.append(distances.sort(dim=-1, stable=True).indices[..., : topk * 4] + start)
            start += count
        assert torch.equal(nearest_anchors(anchors, counts, boxes, topk, grids), torch.cat(expected, dim=-1))


def test_irregular_anchors_fall_back_to_all_anchors_and_still_match_reference():
    anchors, counts = make_anchors(64, 64, strides=(8, 16))
    permutation = torch.randperm(counts[0], generator=torch.Generator().manual_seed(3))
    anchors = torch.cat([anchors[: counts[0]][permutation], anchors[counts[0]:]])
    gt = torch.tensor([[[5.0, 8.0, 50.0, 40.0], [30.0, 30.0, 60.0, 62.0]]], dtype=torch.float64)
    valid = torch.ones(1, 2, dtype=torch.bool)
    result = atss_assign(anchors, counts, gt, valid)
    expected = reference_assign(anchors, counts, 1, gt, valid, None, 9, 0.0, 1.0)
    assert torch.equal(result.gt_index, expected[0])


def test_five_thousand_gts_at_800x1333():
    anchors, counts = make_anchors(800, 1344, strides=(8, 16, 32, 64, 128), dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)
    xy = torch.rand(1, 5000, 2, generator=generator) * torch.tensor([1300.0, 780.0])
    wh = torch.rand(1, 5000, 2, generator=generator) * 40 + 4
    gt = torch.cat([xy, xy + wh], dim=-1)
    preds = anchors.unsqueeze(0)
    result = atss_assign(anchors, counts, gt, torch.ones(1, 5000, dtype=torch.bool), preds)
    assert result.gt_index.shape == (1, len(anchors))
    assert result.positive.sum() > 1000


def test_positive_cap_by_progress():
    late = AssignConfig(max_positives="atss", max_positives_from=0.76)
    assert [positive_cap(late, p) for p in (0.0, 0.75, 0.76, 1.0)] == ["threshold", "threshold", "atss", "atss"]
    assert positive_cap(AssignConfig(max_positives="atss"), 0.0) == "atss"  # default: the whole run
    assert positive_cap(AssignConfig(max_positives_from=0.5), 1.0) == "threshold"  # no cap configured
