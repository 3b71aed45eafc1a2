"""`dynatss assign`: the figure's numbers are the assigner's own (atss_assign), GT by GT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torchvision.io import decode_image
from torchvision.ops import box_iou

from dynatss.assign import atss_assign
from dynatss.cli.main import main
from dynatss.reports.assign_trace import most_changed_gts, trace_assignment, trace_to_dict
from tests.assign.grids import make_anchors

PRED_WEIGHT, ANCHOR_WEIGHT, TOPK = 1.0, 1.0, 4


def _case():
    """Two overlapping GTs (so conflicts are resolved) on a 2-level grid; predicted boxes are the
    anchors shrunk towards GT 0 by known amounts, so PIoUs differ from AIoUs."""
    anchors, counts = make_anchors(64, 64, strides=(8, 16), scales=(4.0,), dtype=torch.float32)
    gt_boxes = torch.tensor([[10.0, 12.0, 42.0, 40.0], [24.0, 20.0, 58.0, 60.0]])  # [G, 4]
    generator = torch.Generator().manual_seed(0)
    pull = torch.rand(len(anchors), 1, generator=generator) * 0.6  # [A, 1]
    pred_boxes = anchors + pull * (gt_boxes[0] - anchors)  # [A, 4]
    return anchors, counts, gt_boxes, pred_boxes


def _mean_plus_std(values: torch.Tensor) -> torch.Tensor:
    return values.mean(-1) + values.std(-1)


def test_trace_equals_atss_assign_gt_by_gt():
    anchors, counts, gt_boxes, pred_boxes = _case()
    trace = trace_assignment(anchors, counts, gt_boxes, pred_boxes, topk=TOPK, pred_weight=PRED_WEIGHT,
                             anchor_weight=ANCHOR_WEIGHT)
    valid = torch.ones(1, 2, dtype=torch.bool)
    atss = atss_assign(anchors, counts, gt_boxes[None], valid, None, topk=TOPK)
    dynamic = atss_assign(anchors, counts, gt_boxes[None], valid, pred_boxes[None], topk=TOPK,
                          pred_weight=PRED_WEIGHT, anchor_weight=ANCHOR_WEIGHT)
    assert trace.candidates.shape == (2, 2 * TOPK)
    torch.testing.assert_close(trace.atss_threshold, atss.threshold[0])
    torch.testing.assert_close(trace.dynamic_threshold, dynamic.threshold[0])
    # The thresholds are the paper's mean + std, recomputed from the numbers the figure shows.
    torch.testing.assert_close(trace.atss_threshold, _mean_plus_std(trace.anchor_ious))
    torch.testing.assert_close(trace.dynamic_threshold,
                               PRED_WEIGHT * _mean_plus_std(trace.pred_ious)
                               + ANCHOR_WEIGHT * _mean_plus_std(trace.anchor_ious))
    torch.testing.assert_close(trace.combined_ious, trace.pred_ious + trace.anchor_ious)
    for g in range(2):
        for positive, assignment in ((trace.atss_positive, atss), (trace.dynamic_positive, dynamic)):
            shown = sorted(trace.candidates[g][positive[g]].tolist())
            assert shown == sorted((assignment.gt_index[0] == g).nonzero().flatten().tolist())
        anchors_g = trace.candidates[g][trace.dynamic_positive[g]]
        torch.testing.assert_close(trace.anchor_ious[g][trace.dynamic_positive[g]], dynamic.anchor_ious[0, anchors_g])
        torch.testing.assert_close(trace.pred_ious[g][trace.dynamic_positive[g]], dynamic.pred_ious[0, anchors_g])
    # Positives lie at or above their threshold with the centre inside; dynamic changes something here.
    assert (trace.combined_ious[trace.dynamic_positive] >= trace.dynamic_threshold.repeat_interleave(
        trace.dynamic_positive.sum(1))).all()
    assert trace.center_inside[trace.dynamic_positive | trace.atss_positive].all()
    assert not torch.equal(trace.atss_positive, trace.dynamic_positive)
    assert trace.levels.tolist() == [[0] * TOPK + [1] * TOPK] * 2


def test_trace_follows_the_runs_level_rule():
    """With assign.levels=anchor or assign.max_positives=atss the figure shows what training assigns,
    not the paper's rule."""
    anchors, counts = make_anchors(160, 160, strides=(8, 16, 32), scales=(4.0,), dtype=torch.float32)
    generator = torch.Generator().manual_seed(3)
    centers, sides = torch.rand(6, 2, generator=generator) * 100 + 30, torch.rand(6, 1, generator=generator) * 60 + 40
    gt_boxes = torch.cat([centers - sides / 2, centers + sides / 2], dim=1)  # [G, 4], 40-100 px
    # Every anchor predicts the GT it overlaps most, a few pixels off: fine levels regress large GTs.
    pred_boxes = gt_boxes[box_iou(anchors, gt_boxes).argmax(dim=1)] + torch.randn(len(anchors), 4, generator=generator) * 4
    valid = torch.ones(1, 6, dtype=torch.bool)
    shown = {}
    for levels, max_positives in (("all", "threshold"), ("anchor", "threshold"), ("all", "atss")):
        trace = trace_assignment(anchors, counts, gt_boxes, pred_boxes, topk=9, pred_weight=1.0, anchor_weight=1.0,
                                 levels=levels, max_positives=max_positives)
        dynamic = atss_assign(anchors, counts, gt_boxes[None], valid, pred_boxes[None], levels=levels,
                              max_positives=max_positives)
        shown[levels, max_positives] = int(trace.dynamic_positive.sum())
        for g in range(6):
            positives = sorted(trace.candidates[g][trace.dynamic_positive[g]].tolist())
            assert positives == sorted((dynamic.gt_index[0] == g).nonzero().flatten().tolist())
    # The case tells the rules apart.
    assert shown["anchor", "threshold"] < shown["all", "threshold"]
    assert shown["all", "atss"] < shown["all", "threshold"]


def test_json_numbers_are_the_traced_ones():
    anchors, counts, gt_boxes, pred_boxes = _case()
    trace = trace_assignment(anchors, counts, gt_boxes, pred_boxes, topk=TOPK, pred_weight=PRED_WEIGHT,
                             anchor_weight=ANCHOR_WEIGHT)
    rows = trace_to_dict(trace, class_names=["cell", "cell"], scale=(2.0, 0.5))
    assert rows[0]["box_original"] == [20.0, 6.0, 84.0, 20.0]
    for g, row in enumerate(rows):
        assert row["dynamic"]["threshold"] == pytest.approx(float(trace.dynamic_threshold[g]), abs=1e-5)
        assert row["atss"]["num_positives"] == int(trace.atss_positive[g].sum())
        assert [c["anchor"] for c in row["candidates"] if c["dynamic_positive"]] == \
            trace.candidates[g][trace.dynamic_positive[g]].tolist()
        assert [c["aiou"] for c in row["candidates"]] == pytest.approx(trace.anchor_ious[g].tolist(), abs=1e-5)
    changed = (trace.atss_positive ^ trace.dynamic_positive).sum(1).tolist()
    areas = [(x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in gt_boxes.tolist()]
    expected = sorted(range(2), key=lambda g: (-changed[g], -areas[g]))
    assert most_changed_gts(trace, 2) == expected and most_changed_gts(trace, 1) == expected[:1]


def test_assign_cli_on_a_dataset_image_and_on_hand_annotations(tiny_run, tmp_path, capsys):
    image = sorted(Path(tiny_run.config.data.root).rglob("*.png"))[0]
    out = tmp_path / "assign"
    assert main(["assign", "--weights", str(tiny_run.checkpoint), str(image), "--out", str(out), "--max-gts", "2"]) == 0
    printed = capsys.readouterr().out
    assert "ATSS thr" in printed and f"assign_{image.stem}.png" in printed
    figure = decode_image(str(out / f"assign_{image.stem}.png"))
    assert figure.shape[1] > 400 and figure.shape[2] > 800
    document = json.loads((out / f"assign_{image.stem}.json").read_text())
    assert 1 <= len(document["shown_gts"]) <= 2 and document["topk"] == tiny_run.config.assign.topk
    for gt in document["gts"]:  # the threshold is mean + std of the candidates' numbers shown
        aiou = torch.tensor([c["aiou"] for c in gt["candidates"]], dtype=torch.float64)
        piou = torch.tensor([c["piou"] for c in gt["candidates"]], dtype=torch.float64)
        expected = document["pred_weight"] * _mean_plus_std(piou) + document["anchor_weight"] * _mean_plus_std(aiou)
        assert gt["dynamic"]["threshold"] == pytest.approx(float(expected), abs=1e-4)
        assert gt["atss"]["threshold"] == pytest.approx(float(_mean_plus_std(aiou)), abs=1e-4)

    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps([{"box": [10, 12, 60, 50], "class_name": "blob"}, {"box": [30, 30, 90, 90]}]))
    assert main(["assign", "--weights", str(tiny_run.checkpoint), str(image), "--annotations", str(boxes),
                 "--out", str(out), "--gts", "1"]) == 0
    document = json.loads((out / f"assign_{image.stem}.json").read_text())
    assert [gt["box_original"] for gt in document["gts"]] == [[10, 12, 60, 50], [30, 30, 90, 90]]
    assert [gt["class_name"] for gt in document["gts"]] == ["blob", "object"] and document["shown_gts"] == [1]


def test_assign_cli_errors_are_one_line(tiny_run, tmp_path, capsys):
    image = sorted(Path(tiny_run.config.data.root).rglob("*.png"))[0]
    elsewhere = tmp_path / "elsewhere.png"
    elsewhere.write_bytes(image.read_bytes())
    assert main(["assign", "--weights", str(tiny_run.checkpoint), str(elsewhere), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not an image of the dataset" in err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"box": [10, 10, 5, 20]}]))
    assert main(["assign", "--weights", str(tiny_run.checkpoint), str(image), "--annotations", str(bad)]) == 2
    assert "x2 > x1" in capsys.readouterr().err
