"""Where a detector fails, beyond COCO AP: PR curves per class, a confusion matrix with background,
and per-class precision / recall / F1 at a score threshold (issue 10).

Everything comes from faster-coco-eval's own evaluation, not a re-implementation:
- PR curves are its interpolated precision array ``eval["precision"]`` [T, R, K, A, M] (T IoU
  thresholds 0.5:0.95, R = 101 recall points, K classes, area "all", 100 detections), so the area
  under each curve is the AP that ``dynatss eval`` prints;
- counts come from its matching (``extra_calc=True`` marks each detection ``tp``/``fp`` with the
  ``gt_id`` it matched and each GT ``fn``): greedy by score, IoU >= the threshold, one detection
  per GT, as COCO matches. Class-aware matching gives per-class TP/FP/FN; class-agnostic matching
  (``useCats=0``) gives the confusion matrix, where a box found with the wrong class is a confusion,
  not a miss plus a false positive.
Crowd / difficult GTs (``iscrowd=1``) are neither found nor missed, and a detection matched to one
is not counted (COCO ignores both).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import numpy as np
from faster_coco_eval import COCO, COCOeval_faster

from dynatss.config import DISPLAY_SCORE_THRESHOLD
from dynatss.data.records import DatasetMeta

# IoU at which a detection counts as found for the counts and the confusion matrix (PASCAL VOC,
# ultralytics' confusion matrix, COCO AP50).
MATCH_IOU = 0.5
# Detections per image taken into the matching: all of them (COCO's 100 is for AP only).
MATCH_MAX_DETECTIONS = 10_000
_ALL_AREAS = [[0.0, 1e10]]


@dataclass(frozen=True)
class PRCurves:
    """Interpolated precision at COCO's recall points, per class (NaN rows: class without GT).

    recall: [R]; precision_50: [K, R] at IoU 0.5; precision_50_95: [K, R] mean over IoU 0.5:0.95.
    """

    class_names: tuple[str, ...]
    recall: np.ndarray
    precision_50: np.ndarray
    precision_50_95: np.ndarray

    @property
    def ap_50(self) -> np.ndarray:
        """[K] AP at IoU 0.5 (the mean of the curve, as COCO computes it); NaN without GT."""
        return self.precision_50.mean(axis=1)

    @property
    def ap_50_95(self) -> np.ndarray:
        """[K] AP at IoU 0.5:0.95 (COCO AP); NaN without GT."""
        return self.precision_50_95.mean(axis=1)


@dataclass(frozen=True)
class ClassCounts:
    """Per-class [K] true positives, false positives and missed GTs at ``score_threshold``, ``iou``."""

    class_names: tuple[str, ...]
    true_positives: np.ndarray
    false_positives: np.ndarray
    false_negatives: np.ndarray
    score_threshold: float
    iou: float

    @property
    def precision(self) -> np.ndarray:
        """[K] TP / (TP + FP); NaN for a class without detections."""
        return _ratio(self.true_positives, self.true_positives + self.false_positives)

    @property
    def recall(self) -> np.ndarray:
        """[K] TP / (TP + FN); NaN for a class without ground truth."""
        return _ratio(self.true_positives, self.true_positives + self.false_negatives)

    @property
    def f1(self) -> np.ndarray:
        """[K] 2 TP / (2 TP + FP + FN), the harmonic mean of precision and recall; NaN if all are 0."""
        return _ratio(2 * self.true_positives, 2 * self.true_positives + self.false_positives + self.false_negatives)


@dataclass(frozen=True)
class ConfusionMatrix:
    """counts[true, predicted], [K + 1, K + 1]; index K is background: column K holds missed GTs,
    row K false positives (detections of no object). counts[K, K] is always 0."""

    class_names: tuple[str, ...]
    counts: np.ndarray
    score_threshold: float
    iou: float

    @property
    def labels(self) -> tuple[str, ...]:
        return (*self.class_names, "background")


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    numerator, denominator = numerator.astype(np.float64), denominator.astype(np.float64)
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _evaluated(gt: dict, detections: list[dict], *, use_cats: bool, iou_thresholds: list[float] | None,
               score_threshold: float = 0.0) -> COCOeval_faster:
    """faster-coco-eval run on the detections scoring at least ``score_threshold``; ``iou_thresholds``
    None keeps COCO's parameters (for the PR curves), else a matching at those IoUs."""
    kept = [dict(d) for d in detections if d["score"] >= score_threshold]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(gt, print_function=lambda *args, **kwargs: None)
        evaluator = COCOeval_faster(coco_gt, coco_gt.loadRes(kept), "bbox", extra_calc=True,
                                    print_function=lambda *args, **kwargs: None)
        if iou_thresholds is not None:
            evaluator.params.iouThrs = np.asarray(iou_thresholds, dtype=np.float64)
            evaluator.params.areaRng, evaluator.params.areaRngLbl = _ALL_AREAS, ["all"]
            evaluator.params.maxDets = [MATCH_MAX_DETECTIONS]
        evaluator.params.useCats = int(use_cats)
        evaluator.evaluate()
        evaluator.accumulate()
    if not evaluator.matched:
        raise RuntimeError("faster-coco-eval did not record its matches (extra_calc)")
    return evaluator


def pr_curves(gt: dict, detections: list[dict], meta: DatasetMeta) -> PRCurves:
    """Per-class precision-recall curves at IoU 0.5 and 0.5:0.95 (``gt``: a COCO dict of the split,
    ``detections``: COCO results with the dataset's category ids)."""
    evaluator = _evaluated(gt, detections, use_cats=True, iou_thresholds=None)
    precision = np.asarray(evaluator.eval["precision"], dtype=np.float64)[:, :, :, 0, -1]  # [T, R, K']
    precision = np.where(precision > -1, precision, np.nan)  # -1: no GT of the class
    column = {int(category_id): k for k, category_id in enumerate(evaluator.params.catIds)}
    num_recalls = precision.shape[1]
    per_class = np.full((len(meta.class_names), precision.shape[0], num_recalls), np.nan)  # [K, T, R]
    for label, category_id in enumerate(meta.category_ids):
        if category_id in column:
            per_class[label] = precision[:, :, column[category_id]]
    iou_50 = int(np.argmin(np.abs(np.asarray(evaluator.params.iouThrs) - MATCH_IOU)))
    return PRCurves(
        class_names=tuple(meta.class_names),
        recall=np.asarray(evaluator.params.recThrs, dtype=np.float64),
        precision_50=per_class[:, iou_50],
        precision_50_95=per_class.mean(axis=1),
    )


def _match_outcomes(evaluator: COCOeval_faster) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """(true category, detected category) of each match, categories of unmatched detections, and
    of missed GTs; crowd GTs and the detections they absorbed are left out."""
    gt_anns, dt_anns = evaluator.cocoGt.anns, evaluator.cocoDt.anns
    crowd = {ann_id for ann_id, ann in gt_anns.items() if ann.get("iscrowd", 0)}
    matched, unmatched = [], []
    for ann in dt_anns.values():
        gt_id = ann.get("gt_id")
        if gt_id is None:
            unmatched.append(int(ann["category_id"]))
        elif gt_id not in crowd:
            matched.append((int(gt_anns[gt_id]["category_id"]), int(ann["category_id"])))
    missed = [int(ann["category_id"]) for ann_id, ann in gt_anns.items()
              if ann_id not in crowd and ann.get("dt_id") is None]
    return matched, unmatched, missed


def _label_counts(category_ids: list[int], meta: DatasetMeta) -> np.ndarray:
    label_of = {category_id: label for label, category_id in enumerate(meta.category_ids)}
    return np.bincount([label_of[c] for c in category_ids], minlength=len(meta.category_ids)).astype(np.int64)


def class_counts(gt: dict, detections: list[dict], meta: DatasetMeta, *,
                 score_threshold: float = DISPLAY_SCORE_THRESHOLD, iou: float = MATCH_IOU) -> ClassCounts:
    """Per-class TP / FP / FN of the detections scoring at least ``score_threshold`` (class-aware)."""
    evaluator = _evaluated(gt, detections, use_cats=True, iou_thresholds=[iou], score_threshold=score_threshold)
    matched, unmatched, missed = _match_outcomes(evaluator)
    return ClassCounts(
        class_names=tuple(meta.class_names),
        true_positives=_label_counts([detected for _, detected in matched], meta),
        false_positives=_label_counts(unmatched, meta),
        false_negatives=_label_counts(missed, meta),
        score_threshold=score_threshold,
        iou=iou,
    )


def confusion_matrix(gt: dict, detections: list[dict], meta: DatasetMeta, *,
                     score_threshold: float = DISPLAY_SCORE_THRESHOLD, iou: float = MATCH_IOU) -> ConfusionMatrix:
    """Counts of (true class, predicted class) with background, class-agnostic matching."""
    evaluator = _evaluated(gt, detections, use_cats=False, iou_thresholds=[iou], score_threshold=score_threshold)
    matched, unmatched, missed = _match_outcomes(evaluator)
    label_of = {category_id: label for label, category_id in enumerate(meta.category_ids)}
    background = len(meta.class_names)
    counts = np.zeros((background + 1, background + 1), dtype=np.int64)
    pairs = np.array([(label_of[t], label_of[d]) for t, d in matched], dtype=np.int64).reshape(-1, 2)
    np.add.at(counts, (pairs[:, 0], pairs[:, 1]), 1)
    counts[background, :background] = _label_counts(unmatched, meta)
    counts[:background, background] = _label_counts(missed, meta)
    return ConfusionMatrix(tuple(meta.class_names), counts, score_threshold, iou)
