"""Evaluation figures and tables for `dynatss eval` and `dynatss report` (issue 10): PR curves per
class, the confusion matrix with background, and per-class precision / recall / F1 at a score
threshold. The numbers come from :mod:`dynatss.engine.eval_analysis`; this module only draws and
formats them (matplotlib, Agg, no pyplot state) and writes them with the detections.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from dynatss.atomic import atomic_write_bytes, atomic_write_text
from dynatss.config import DISPLAY_SCORE_THRESHOLD
from dynatss.data.coco_io import records_to_coco
from dynatss.data.records import DatasetMeta, ImageRecord
from dynatss.draw.curves import figure_png
from dynatss.engine.eval_analysis import (
    ClassCounts,
    ConfusionMatrix,
    PRCurves,
    class_counts,
    confusion_matrix,
    pr_curves,
)

DPI = 110
PR_PANEL_SIZE = (5.2, 4.8)  # inches per panel
# Confusion matrix: inches per cell, and the smallest figure side (small class counts).
CELL_INCHES = 0.75
MIN_MATRIX_INCHES = 4.5
MATRIX_COLORMAP = "Blues"
DARK_CELL_FRACTION = 0.5  # cells shaded beyond this fraction of their row get white text
DECIMALS = 3


@dataclass(frozen=True)
class EvaluationAnalysis:
    """Everything the evaluation figures and tables show, for one split."""

    curves: PRCurves
    counts: ClassCounts
    matrix: ConfusionMatrix


@dataclass(frozen=True)
class EvaluationFiles:
    pr_curves: Path
    confusion_matrix: Path
    summary: Path


def analyse(records: list[ImageRecord], meta: DatasetMeta, detections: list[dict], *,
            score_threshold: float = DISPLAY_SCORE_THRESHOLD) -> EvaluationAnalysis:
    """PR curves, per-class counts and confusion matrix of COCO-format ``detections`` on ``records``."""
    gt = records_to_coco(records, meta)
    return EvaluationAnalysis(
        curves=pr_curves(gt, detections, meta),
        counts=class_counts(gt, detections, meta, score_threshold=score_threshold),
        matrix=confusion_matrix(gt, detections, meta, score_threshold=score_threshold),
    )


def write_evaluation(analysis: EvaluationAnalysis, out_dir: str | Path, *, name: str) -> EvaluationFiles:
    """``pr_curves_NAME.png``, ``confusion_matrix_NAME.png`` and ``per_class_NAME.json`` in ``out_dir``."""
    out_dir = Path(out_dir)
    return EvaluationFiles(
        pr_curves=_save(pr_figure(analysis.curves), out_dir / f"pr_curves_{name}.png"),
        confusion_matrix=_save(confusion_figure(analysis.matrix), out_dir / f"confusion_matrix_{name}.png"),
        summary=atomic_write_text(out_dir / f"per_class_{name}.json",
                                  json.dumps(summary_dict(analysis), indent=1) + "\n"),
    )


def _save(figure: Figure, path: Path) -> Path:
    return atomic_write_bytes(path, figure_png(figure, DPI))


def pr_figure(curves: PRCurves) -> Figure:
    """Two panels, IoU 0.5 and IoU 0.5:0.95: one curve per class (AP in the legend) and their mean."""
    figure = Figure(figsize=(PR_PANEL_SIZE[0] * 2, PR_PANEL_SIZE[1]), layout="constrained")
    axes = figure.subplots(1, 2)
    for axis, precision, aps, what in ((axes[0], curves.precision_50, curves.ap_50, "AP50"),
                                       (axes[1], curves.precision_50_95, curves.ap_50_95, "AP")):
        with_gt = ~np.isnan(aps)
        for label, name in enumerate(curves.class_names):
            if with_gt[label]:
                axis.plot(curves.recall, precision[label], linewidth=1.4, color=f"C{label % 10}",
                          label=f"{name} {what} {aps[label]:.{DECIMALS}f}")
        if with_gt.any():
            axis.plot(curves.recall, precision[with_gt].mean(axis=0), color="black", linewidth=2.6,
                      label=f"all classes m{what} {aps[with_gt].mean():.{DECIMALS}f}")
        else:
            axis.text(0.5, 0.5, "no ground truth", ha="center", va="center", transform=axis.transAxes)
        iou_text = "IoU 0.5" if what == "AP50" else "IoU 0.5:0.95 (mean of 10 thresholds)"
        axis.set(title=f"Precision-recall, {iou_text}", xlabel="recall", ylabel="precision",
                 xlim=(0, 1), ylim=(0, 1.02))
        axis.grid(True, alpha=0.3)
        if with_gt.any():
            axis.legend(loc="lower left", fontsize="small")
    figure.suptitle("COCO interpolated precision at 101 recall points (area under a curve = its AP)",
                    fontsize="medium")
    return figure


def confusion_figure(matrix: ConfusionMatrix) -> Figure:
    """Counts in every cell; shading is the fraction of the cell's row (of the true class)."""
    labels = matrix.labels
    side = max(MIN_MATRIX_INCHES, CELL_INCHES * len(labels) + 2.5)
    figure = Figure(figsize=(side + 1.0, side), layout="constrained")
    axis = figure.subplots()
    counts = matrix.counts.astype(np.float64)
    row_sums = counts.sum(axis=1, keepdims=True)
    fractions = np.divide(counts, row_sums, out=np.zeros_like(counts), where=row_sums > 0)
    image = axis.imshow(fractions, cmap=MATRIX_COLORMAP, vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axis, label="fraction of the row (true class)", shrink=0.8)
    for (row, column), count in np.ndenumerate(matrix.counts):
        if row == column == len(labels) - 1:
            axis.text(column, row, "-", ha="center", va="center", color="gray")
            continue
        color = "white" if fractions[row, column] > DARK_CELL_FRACTION else "black"
        axis.text(column, row, str(count), ha="center", va="center", color=color, fontsize="medium")
    ticks = np.arange(len(labels))
    axis.set_xticks(ticks, labels, rotation=30 if max(map(len, labels)) > 6 else 0, ha="right")
    axis.set_yticks(ticks, labels)
    axis.set_xlabel("predicted class (background: ground truth missed)")
    axis.set_ylabel("true class (background: false positive)")
    axis.set_title(f"Confusion matrix: score >= {matrix.score_threshold:g}, IoU >= {matrix.iou:g}, "
                   "class-agnostic matching", fontsize="medium")
    return figure


def class_rows(analysis: EvaluationAnalysis) -> tuple[list[str], list[list[str]]]:
    """Header and one row per class: AP50, AP, then TP/FP/FN, precision, recall, F1 at the threshold."""
    counts, curves = analysis.counts, analysis.curves
    header = ["class", "AP50", "AP", "TP", "FP", "FN", "precision", "recall", "F1"]
    rows = []
    for label, name in enumerate(counts.class_names):
        rows.append([name, _fraction(curves.ap_50[label]), _fraction(curves.ap_50_95[label]),
                     str(counts.true_positives[label]), str(counts.false_positives[label]),
                     str(counts.false_negatives[label]), _fraction(counts.precision[label]),
                     _fraction(counts.recall[label]), _fraction(counts.f1[label])])
    return header, rows


def _fraction(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{DECIMALS}f}"


def class_table(analysis: EvaluationAnalysis) -> str:
    """:func:`class_rows` as aligned plain text, with the threshold it was counted at."""
    header, rows = class_rows(analysis)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in [header, *rows]]
    counts = analysis.counts
    absent = [name for k, name in enumerate(counts.class_names)
              if counts.true_positives[k] + counts.false_negatives[k] == 0]
    if absent:  # a class of the label map with no boxes here: its AP and recall are undefined
        lines.append(f"n/a: no boxes of {', '.join(absent)} in this split (AP, recall), or no detections (precision)")
    return "\n".join([f"per class at score >= {counts.score_threshold:g}, IoU >= {counts.iou:g} "
                      "(TP/FP/FN, precision, recall, F1):", *lines])


def summary_dict(analysis: EvaluationAnalysis) -> dict:
    """The numbers behind the figures, JSON-ready (NaN written as null)."""
    counts, curves, matrix = analysis.counts, analysis.curves, analysis.matrix

    def plain(value: float) -> float | None:
        return None if math.isnan(value) else round(float(value), 5)

    return {
        "score_threshold": counts.score_threshold,
        "iou": counts.iou,
        "classes": {
            name: {"AP50": plain(curves.ap_50[k]), "AP": plain(curves.ap_50_95[k]),
                   "tp": int(counts.true_positives[k]), "fp": int(counts.false_positives[k]),
                   "fn": int(counts.false_negatives[k]), "precision": plain(counts.precision[k]),
                   "recall": plain(counts.recall[k]), "f1": plain(counts.f1[k])}
            for k, name in enumerate(counts.class_names)
        },
        "confusion_matrix": {"labels": list(matrix.labels), "counts_true_by_predicted": matrix.counts.tolist()},
    }
