"""experiments/margin_by_class.py: per-class box statistics, paired per-class differences, ranks."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from experiments.margin_by_class import (
    ClassBoxes,
    ClassMargin,
    class_boxes,
    paired_by_class,
    per_class_runs,
    ranks,
    render,
    spearman,
)
from experiments.results_doc import collect
from experiments.variants import find_variants


def test_class_boxes_counts_and_medians_by_hand():
    # Class a: two 10 x 10 squares; class b: a 40 x 10 box and a 10 x 40 one; class c: none in training.
    box_wh = np.array([[10.0, 10.0], [10.0, 10.0], [40.0, 10.0], [10.0, 40.0]])
    labels = np.array([0, 0, 1, 1])
    eval_labels = np.array([1, 1, 2])
    result = class_boxes(box_wh, labels, eval_labels, ["a", "b", "c"], np.array([10.0, 20.0]))
    assert [c.name for c in result] == ["a", "b"]
    a, b = result
    assert (a.train_boxes, a.eval_boxes, b.train_boxes, b.eval_boxes) == (2, 0, 2, 2)
    assert a.median_side == pytest.approx(10.0) and b.median_side == pytest.approx(20.0)
    assert a.median_elongation == pytest.approx(0.0) and b.median_elongation == pytest.approx(math.log(4))
    assert a.median_anchor_iou == pytest.approx(1.0)
    # 40 x 10 against a centred 10 x 10 square: 100 / 400 = 0.25; against 20 x 20: 200 / (400 + 400 - 200) = 1/3.
    assert b.median_anchor_iou == pytest.approx(1 / 3)


def write_run(directory, iteration, per_class):
    directory.mkdir(parents=True)
    lines = [{"type": "eval", "iter": iteration // 2, "metrics": {"AP": 0.0}, "per_class": {"a": 0.99}},
             {"type": "eval", "iter": iteration, "metrics": {"AP": 0.5}, "per_class": per_class}]
    (directory / "metrics.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")


def test_paired_by_class_uses_the_final_eval_and_the_seeds_both_have(tmp_path):
    write_run(tmp_path / "ciou_qfl_iou" / "seed0", 100, {"a": 0.30, "b": 0.50})
    write_run(tmp_path / "ciou_qfl_iou" / "seed1", 100, {"a": 0.34, "b": -1.0})  # COCO's -1: no b in this eval
    write_run(tmp_path / "ciou_qfl_iou" / "seed2", 100, {"a": 0.90, "b": 0.90})  # no baseline seed 2
    write_run(tmp_path / "atss" / "seed0", 100, {"a": 0.20, "b": 0.40})
    write_run(tmp_path / "atss" / "seed1", 100, {"a": 0.28, "b": 0.40})
    rows, _ = collect(find_variants(["ciou_qfl_iou", "atss"]), [0, 1, 2], tmp_path, 100)
    row, base = (per_class_runs(r) for r in rows)
    assert row.metrics[1] == {"a": 0.34}
    mean, half, seeds, ahead = paired_by_class(row, base, "a")
    # Differences +10 and +6 points: mean 8, std 2 * sqrt(2), t(1) = 12.706 over sqrt(2).
    assert (mean, seeds, ahead) == (pytest.approx(8.0), 2, 2)
    assert half == pytest.approx(12.706 * 2 * math.sqrt(2) / math.sqrt(2))
    assert paired_by_class(row, base, "b") is None  # one shared seed only


def test_ranks_average_ties_and_spearman_by_hand():
    assert ranks([30.0, 10.0, 20.0, 10.0]) == [4.0, 1.5, 3.0, 1.5]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # Ranks x = 1..4, y = 1, 3, 2, 4: Pearson of the ranks is 1 - 6 * 2 / (4 * 15) = 0.8.
    assert spearman([1, 2, 3, 4], [5, 9, 7, 11]) == pytest.approx(0.8)
    assert math.isnan(spearman([1, 2, 3], [7, 7, 7]))


def test_render_sorts_by_training_boxes_and_correlates_the_measured_classes(tmp_path):
    def margin(name, boxes, side, difference):
        return ClassMargin(ClassBoxes(name, boxes, 1, side, 0.0, 0.5), difference)

    margins = {"d": [margin("common", 900, 10.0, (-1.0, 0.5, 3, 0)), margin("rare", 50, 40.0, (5.0, 1.0, 3, 3)),
                     margin("mid", 300, 20.0, (1.0, 0.5, 3, 2)), margin("unmeasured", 1, 5.0, None)]}
    lines = render(margins, "full", "atss", tmp_path).splitlines()
    table = [line for line in lines if line.startswith("| d |")]
    assert [line.split(" | ")[1] for line in table] == ["unmeasured", "rare", "mid", "common"]
    assert "| +5.0 (+4.0, +6.0) | 3/3 |" in table[1]
    assert lines[-1].endswith("over the 3 classes with a difference: training boxes -1.00, median side +1.00, "
                              "elongation - (constant), best anchor IoU - (constant).")
