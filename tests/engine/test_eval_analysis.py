"""PR curves, confusion matrix and per-class P/R/F1 on hand-built sets whose answers are known."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from torchvision.io import decode_image

from dynatss.data.coco_io import records_to_coco
from dynatss.data.records import DatasetMeta, ImageRecord
from dynatss.engine.eval_analysis import class_counts, confusion_matrix, pr_curves
from dynatss.engine.evaluate import coco_metrics
from dynatss.reports.evaluation import analyse, class_rows, class_table, write_evaluation

META = DatasetMeta(class_names=("cat", "dog"), category_ids=(17, 42))
CAT, DOG = META.category_ids


def _record(image_id: int, boxes: list[list[float]], labels: list[int], ignore: list[bool] | None = None):
    return ImageRecord(image_id=image_id, path=Path(f"{image_id}.png"), width=200, height=200,
                       boxes=np.array(boxes, np.float32).reshape(-1, 4), labels=np.array(labels, np.int64),
                       ignore=np.array(ignore or [False] * len(labels), bool))


def _det(image_id: int, category_id: int, box_xyxy: list[float], score: float) -> dict:
    x1, y1, x2, y2 = box_xyxy
    return {"image_id": image_id, "category_id": category_id, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score}


# Image 1: a cat found perfectly, a dog found with the wrong class (cat).
# Image 2: a crowd cat region with a detection on it (ignored), a dog missed, a dog false positive,
#          and a dog detection on the missed dog that scores below the threshold.
RECORDS = [
    _record(1, [[10, 10, 50, 50], [100, 100, 150, 160]], [0, 1]),
    _record(2, [[0, 0, 60, 60], [120, 120, 170, 170]], [0, 1], ignore=[True, False]),
]
DETECTIONS = [
    _det(1, CAT, [10, 10, 50, 50], 0.9),  # TP cat
    _det(1, CAT, [100, 100, 150, 160], 0.8),  # dog GT, predicted cat
    _det(2, CAT, [0, 0, 60, 60], 0.7),  # on the crowd region: not counted
    _det(2, DOG, [10, 150, 30, 190], 0.6),  # FP dog, nothing there
    _det(2, DOG, [120, 120, 170, 170], 0.1),  # the missed dog, below the threshold 0.3
]


def test_counts_precision_recall_f1_by_hand():
    counts = class_counts(records_to_coco(RECORDS, META), DETECTIONS, META, score_threshold=0.3)
    assert counts.true_positives.tolist() == [1, 0]
    assert counts.false_positives.tolist() == [1, 1]  # cat on the dog; dog on nothing
    assert counts.false_negatives.tolist() == [0, 2]  # both dogs missed at 0.3 (the crowd cat is neither)
    np.testing.assert_allclose(counts.precision, [0.5, 0.0])
    np.testing.assert_allclose(counts.recall, [1.0, 0.0])
    np.testing.assert_allclose(counts.f1, [2 / 3, 0.0])
    # Lowering the threshold lets the low-scoring dog in: it is found.
    low = class_counts(records_to_coco(RECORDS, META), DETECTIONS, META, score_threshold=0.05)
    assert low.true_positives.tolist() == [1, 1] and low.false_negatives.tolist() == [0, 1]


def test_confusion_matrix_with_background_by_hand():
    matrix = confusion_matrix(records_to_coco(RECORDS, META), DETECTIONS, META, score_threshold=0.3)
    assert matrix.labels == ("cat", "dog", "background")
    # rows: true cat, dog, background (false positives); columns: predicted cat, dog, background (missed)
    assert matrix.counts.tolist() == [[1, 0, 0],
                                      [1, 0, 1],
                                      [0, 1, 0]]  # fmt: skip


def test_pr_curves_area_is_the_coco_ap_and_known_by_hand():
    gt = records_to_coco(RECORDS, META)
    curves = pr_curves(gt, DETECTIONS, META)
    assert curves.recall.shape == (101,) and curves.precision_50.shape == (2, 101)
    # cat: one GT, found by the top-scoring detection: precision 1 at every recall.
    np.testing.assert_allclose(curves.precision_50[0], 1.0)
    # dog: ranked FP (0.6) then TP (0.1) of 2 GTs: precision 1/2 up to recall 1/2, 0 beyond.
    expected = np.where(curves.recall <= 0.5, 0.5, 0.0)
    np.testing.assert_allclose(curves.precision_50[1], expected)
    _, per_class_ap = coco_metrics(gt, DETECTIONS, META)
    for label, name in enumerate(META.class_names):
        assert curves.ap_50_95[label] == pytest.approx(per_class_ap[name], abs=1e-9)


def test_class_without_ground_truth_and_no_detections():
    records = [_record(1, [[10, 10, 50, 50]], [0])]
    analysis = analyse(records, META, [])
    assert math.isnan(analysis.curves.ap_50[1]) and analysis.curves.ap_50[0] == 0.0
    assert analysis.counts.false_negatives.tolist() == [1, 0]
    assert math.isnan(analysis.counts.precision[0]) and analysis.counts.recall[0] == 0.0
    assert analysis.matrix.counts.tolist() == [[0, 0, 1], [0, 0, 0], [0, 0, 0]]
    header, rows = class_rows(analysis)
    assert rows[1][header.index("AP50")] == "n/a"
    # The table says why: the second class has no boxes in the split.
    assert class_table(analysis).splitlines()[-1].startswith(f"n/a: no boxes of {META.class_names[1]} in this split")
    assert "no boxes of" not in class_table(analyse(RECORDS, META, DETECTIONS))


def test_written_figures_table_and_numbers(tmp_path):
    analysis = analyse(RECORDS, META, DETECTIONS, score_threshold=0.3)
    files = write_evaluation(analysis, tmp_path, name="val")
    for png in (files.pr_curves, files.confusion_matrix):
        assert png.parent == tmp_path and decode_image(str(png)).shape[1] > 300
    numbers = json.loads(files.summary.read_text())
    assert numbers["classes"]["cat"] == {"AP50": 1.0, "AP": 1.0, "tp": 1, "fp": 1, "fn": 0, "precision": 0.5,
                                         "recall": 1.0, "f1": 0.66667}
    assert numbers["confusion_matrix"]["counts_true_by_predicted"][1] == [1, 0, 1]
    table = class_table(analysis)
    assert "score >= 0.3" in table and table.splitlines()[2].split() == [
        "cat", "1.000", "1.000", "1", "1", "0", "0.500", "1.000", "0.667"]
