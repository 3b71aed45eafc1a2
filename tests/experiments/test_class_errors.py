"""experiments/class_errors.py: COCO's greedy matching and the four kinds of confident false positives."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.class_errors import class_errors, classify_detections, main


def _det(box: list[float], score: float, image_id: int = 1, category_id: int = 1) -> dict:
    return {"image_id": image_id, "category_id": category_id, "bbox": box, "score": score}


def test_each_false_positive_kind_and_the_greedy_match():
    platelet = [10.0, 10.0, 20.0, 20.0]
    cell = [100.0, 100.0, 40.0, 40.0]
    detections = [
        _det([10, 10, 20, 20], 0.9),  # matches the platelet
        _det([11, 11, 20, 20], 0.8),  # IoU >= 0.5 with the platelet, already matched: duplicate
        _det([20, 20, 20, 20], 0.7),  # IoU 0.14 with the platelet: poor box
        _det([105, 105, 30, 30], 0.6),  # on the cell of the other class
        _det([300, 300, 20, 20], 0.5),  # background
        _det([300, 10, 20, 20], 0.2),  # background, below the score: counted as FP only
    ]
    tp, fp, kinds = classify_detections(detections, [platelet], [cell], score=0.3)
    assert tp == [0.9]
    assert fp == [0.8, 0.7, 0.6, 0.5, 0.2]
    assert kinds == {"duplicate": 1, "poor box": 1, "on another class": 1, "background": 1}


def test_the_higher_score_takes_the_ground_truth_whatever_the_input_order():
    tp, fp, _ = classify_detections([_det([12, 12, 20, 20], 0.4), _det([10, 10, 20, 20], 0.9)],
                                    [[10.0, 10.0, 20.0, 20.0]], [], score=0.3)
    assert tp == [0.9] and fp == [0.4]


def test_split_counts_use_the_median_true_positive_score():
    ground_truth = {"images": [{"id": 1}, {"id": 2}],
                    "annotations": [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
                                    {"image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10]},
                                    {"image_id": 2, "category_id": 2, "bbox": [50, 50, 10, 10]}]}
    detections = [_det([0, 0, 10, 10], 0.8), _det([0, 0, 10, 10], 0.6, image_id=2),
                  _det([80, 80, 10, 10], 0.75, image_id=2), _det([50, 50, 10, 10], 0.9, image_id=2, category_id=2)]
    counts = class_errors(ground_truth, detections, category_id=1, score=0.3)
    assert counts["true_positives"] == 2 and counts["median_tp_score"] == 0.7
    assert counts["fp_above_median_tp"] == 1 and counts["background"] == 1 and counts["on another class"] == 0


BCCD = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "bccd"


@pytest.mark.skipif(not BCCD.is_dir(), reason="BCCD not found at ../shared/data/bccd")
def test_committed_platelet_detections_rebuild_the_documented_row(capsys, monkeypatch):
    """The table of docs/results_analysis.md comes from committed files and a config, no checkpoint."""
    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)
    assert main(["--config", "configs/experiments/bccd.yaml", "--class-name", "Platelets",
                 "docs/results/bccd/platelet_detections/atss_seed0.json"]) == 0
    assert "| 84.6 | 25.7 | 65 | 0.464 | 2 | 10 | 0 | 0 | 1 | 9 |" in capsys.readouterr().out


@pytest.mark.skipif(not BCCD.is_dir(), reason="BCCD not found at ../shared/data/bccd")
def test_an_unknown_class_name_is_one_line_naming_the_classes(capsys, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    assert main(["--config", "configs/experiments/bccd.yaml", "--class-name", "platelet",
                 "docs/results/bccd/platelet_detections/atss_seed0.json"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "'platelet'" in error and "'Platelets'" in error
