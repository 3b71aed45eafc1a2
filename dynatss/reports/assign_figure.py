"""The `dynatss assign` figure: ATSS and combined-IoU assignment side by side, GT by GT.

Top: the image as the model sees it (test-scale resize) with every GT numbered. Then one row per
chosen GT: (1) ATSS: its candidate anchor centres and the anchors ATSS makes positive; (2) the
combined IoU: the predicted boxes of the positives; (3) AIoU of each candidate against the ATSS
threshold; (4) the combined IoU of each candidate, stacked as w_a AIoU + w_p PIoU, against its
threshold. Positives are the saturated bars; hatched bars have their anchor centre outside the GT
(never positive, whatever the IoU).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from torch import Tensor

from dynatss.atomic import atomic_write_bytes
from dynatss.reports.assign_trace import AssignmentTrace

DPI = 80
ROW_SIZE = (17.0, 3.4)  # inches per GT row
OVERVIEW_HEIGHT = 5.0  # inches
CROP_MARGIN = 0.25  # fraction of the crop's size added around the GT and its candidates
ATSS_COLOR = "#ff7f0e"
DYNAMIC_COLOR = "#1f77b4"
GT_COLOR = "#ffffff"
FAINT_BAR_COLOR = "#c7c7c7"
CANDIDATE_MARKER_SIZE = 36


def write_assignment_figure(trace: AssignmentTrace, image: Tensor, gts: list[int], class_names: list[str],
                            path: str | Path, *, strides: list[int], title: str) -> Path:
    """Draw the figure for the GTs ``gts`` on ``image`` [3, H, W] uint8 (model-input pixels); PNG.
    ``strides``: the stride of each pyramid level, finest first (levels are named P3, P4, ...)."""
    figure = assignment_figure(trace, image, gts, class_names, strides=strides, title=title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return atomic_write_bytes(path, buffer.getvalue())


def assignment_figure(trace: AssignmentTrace, image: Tensor, gts: list[int], class_names: list[str], *,
                      strides: list[int], title: str) -> Figure:
    level_names = [f"P{stride.bit_length() - 1} (stride {stride})" for stride in strides]
    pixels = image.permute(1, 2, 0).cpu().numpy()  # [H, W, 3]
    height = OVERVIEW_HEIGHT + ROW_SIZE[1] * len(gts)
    figure = Figure(figsize=(ROW_SIZE[0], height), layout="constrained")
    grid = figure.add_gridspec(1 + len(gts), 4, height_ratios=[OVERVIEW_HEIGHT] + [ROW_SIZE[1]] * len(gts),
                               width_ratios=[1, 1, 1.6, 1.6])
    _overview(figure.add_subplot(grid[0, :2]), trace, pixels, gts, class_names)
    _legend_panel(figure.add_subplot(grid[0, 2:]), trace)
    for row, g in enumerate(gts, start=1):
        box_text = f"GT {g} ({class_names[g]})"
        crop = _crop_window(trace, g, pixels.shape[:2])
        _crop_panel(figure.add_subplot(grid[row, 0]), trace, pixels, g, crop, dynamic=False,
                    title=f"{box_text}: ATSS, {int(trace.atss_positive[g].sum())} positives")
        _crop_panel(figure.add_subplot(grid[row, 1]), trace, pixels, g, crop, dynamic=True,
                    title=f"{box_text}: combined IoU, {int(trace.dynamic_positive[g].sum())} positives")
        _atss_bars(figure.add_subplot(grid[row, 2]), trace, g, level_names)
        _combined_bars(figure.add_subplot(grid[row, 3]), trace, g, level_names)
    figure.suptitle(title, fontsize="large")
    return figure


def _overview(axis, trace: AssignmentTrace, pixels: np.ndarray, gts: list[int], class_names: list[str]) -> None:
    axis.imshow(pixels)
    for g, (x1, y1, x2, y2) in enumerate(trace.gt_boxes.tolist()):
        chosen = g in gts
        axis.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, linewidth=2.2 if chosen else 1.0,
                                 edgecolor="#ffd700" if chosen else GT_COLOR))
        axis.text(x1 + 2, y1 + 2, str(g), va="top", fontsize="small" if chosen else "x-small",
                  color="black", bbox=dict(facecolor="#ffd700" if chosen else GT_COLOR, pad=1, linewidth=0))
    axis.set_title("ground truth (numbered; yellow: shown below), model-input pixels", fontsize="medium")
    axis.set_axis_off()


def _legend_panel(axis, trace: AssignmentTrace) -> None:
    lines = [
        f"Candidates: per pyramid level, the {trace.topk} anchor locations nearest to the GT centre.",
        "ATSS: positive if AIoU >= mean + std of the candidates' AIoUs.",
        f"Combined IoU = {trace.pred_weight:g} x PIoU + {trace.anchor_weight:g} x AIoU (PIoU: the head's",
        f"predicted box vs the GT); positive if >= {trace.pred_weight:g} x (mean + std of the PIoUs)",
        f"+ {trace.anchor_weight:g} x (mean + std of the AIoUs): not the std of the combined IoU.",
        "Both: the anchor centre must lie inside the GT; an anchor claimed by",
        "several GTs goes to the one with the highest (combined) IoU.",
        "",
        "Image panels: white = GT, circles = candidate anchor centres,",
        "orange = ATSS positive anchors, blue = predicted boxes of combined-IoU positives.",
        "Bars: saturated = positive, grey = not, hatched = centre outside the GT.",
    ]
    axis.text(0.0, 1.0, "\n".join(lines), va="top", ha="left", fontsize="medium", transform=axis.transAxes,
              family="DejaVu Sans", linespacing=1.5)
    axis.set_axis_off()


def _crop_window(trace: AssignmentTrace, g: int, image_size: tuple[int, int]) -> tuple[float, float, float, float]:
    """x1, y1, x2, y2 around the GT, its positive anchors and predicted boxes, plus a margin."""
    positives = trace.candidates[g][trace.atss_positive[g] | trace.dynamic_positive[g]]
    boxes = [trace.gt_boxes[g : g + 1], trace.anchors[positives], trace.pred_boxes[positives]]
    stacked = np.concatenate([b.cpu().numpy().reshape(-1, 4) for b in boxes])
    x1, y1 = stacked[:, :2].min(axis=0)
    x2, y2 = stacked[:, 2:].max(axis=0)
    margin = CROP_MARGIN * max(x2 - x1, y2 - y1)
    height, width = image_size
    return max(0.0, x1 - margin), max(0.0, y1 - margin), min(width, x2 + margin), min(height, y2 + margin)


def _crop_panel(axis, trace: AssignmentTrace, pixels: np.ndarray, g: int, crop, *, dynamic: bool, title: str) -> None:
    axis.imshow(pixels)
    x1, y1, x2, y2 = trace.gt_boxes[g].tolist()
    axis.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=GT_COLOR, linewidth=2.0))
    candidates = trace.candidates[g]
    positive = trace.dynamic_positive[g] if dynamic else trace.atss_positive[g]
    color = DYNAMIC_COLOR if dynamic else ATSS_COLOR
    centers = ((trace.anchors[candidates, :2] + trace.anchors[candidates, 2:]) / 2).cpu().numpy()  # [K, 2]
    axis.scatter(centers[:, 0], centers[:, 1], s=CANDIDATE_MARKER_SIZE, facecolors="none", edgecolors="#ffffff",
                 linewidths=1.0)
    axis.scatter(centers[positive.cpu().numpy(), 0], centers[positive.cpu().numpy(), 1], s=CANDIDATE_MARKER_SIZE,
                 color=color, edgecolors="#ffffff", linewidths=1.0)
    shown = (trace.pred_boxes if dynamic else trace.anchors)[candidates[positive]]
    for bx1, by1, bx2, by2 in shown.tolist():
        axis.add_patch(Rectangle((bx1, by1), bx2 - bx1, by2 - by1, fill=False, edgecolor=color, linewidth=1.4))
    axis.set_xlim(crop[0], crop[2])
    axis.set_ylim(crop[3], crop[1])
    axis.set_title(title, fontsize="medium")
    axis.set_xticks([])
    axis.set_yticks([])


def _bar_positions(trace: AssignmentTrace, g: int, level_names: list[str]) -> tuple[np.ndarray, list]:
    """x position of each candidate, with a gap between pyramid levels, and the level labels."""
    levels = trace.levels[g].cpu().numpy()
    positions = np.arange(len(levels)) + levels  # one empty slot between levels
    labels = [(float(positions[levels == lv].mean()), level_names[lv]) for lv in np.unique(levels)]
    return positions, labels


def _style_bars(axis, trace: AssignmentTrace, g: int, bars, positive: np.ndarray, color: str) -> None:
    inside = trace.center_inside[g].cpu().numpy()
    for bar, is_positive, is_inside in zip(bars, positive, inside):
        bar.set_facecolor(color if is_positive else FAINT_BAR_COLOR)
        if not is_inside:
            bar.set_hatch("///")
            bar.set_edgecolor("#555555")


def _finish_bars(axis, positions_labels, ylabel: str, title: str, top: float, extra_handles=()) -> None:
    ticks, names = zip(*positions_labels)
    axis.set_xticks(ticks, names)
    axis.set_ylim(0, top)
    axis.set_ylabel(ylabel)
    axis.set_xlabel("candidates (nearest centre first within each level)")
    axis.set_title(title, fontsize="medium")
    handles, _ = axis.get_legend_handles_labels()
    axis.legend(handles=[*handles, *extra_handles], loc="upper right", fontsize="small")
    axis.grid(True, axis="y", alpha=0.3)


def _atss_bars(axis, trace: AssignmentTrace, g: int, level_names: list[str]) -> None:
    positions, labels = _bar_positions(trace, g, level_names)
    aiou = trace.anchor_ious[g].cpu().numpy()
    bars = axis.bar(positions, aiou, width=0.8)
    _style_bars(axis, trace, g, bars, trace.atss_positive[g].cpu().numpy(), ATSS_COLOR)
    threshold = float(trace.atss_threshold[g])
    axis.axhline(threshold, color=ATSS_COLOR, linestyle="--", linewidth=1.6, label=f"threshold {threshold:.3f}")
    _finish_bars(axis, labels, "AIoU", "ATSS: anchor IoU of each candidate", top=1.0)


def _combined_bars(axis, trace: AssignmentTrace, g: int, level_names: list[str]) -> None:
    positions, labels = _bar_positions(trace, g, level_names)
    anchor_part = trace.anchor_weight * trace.anchor_ious[g].cpu().numpy()
    pred_part = trace.pred_weight * trace.pred_ious[g].cpu().numpy()
    positive = trace.dynamic_positive[g].cpu().numpy()
    lower = axis.bar(positions, anchor_part, width=0.8, alpha=0.55)
    upper = axis.bar(positions, pred_part, bottom=anchor_part, width=0.8)
    _style_bars(axis, trace, g, lower, positive, ATSS_COLOR)
    _style_bars(axis, trace, g, upper, positive, DYNAMIC_COLOR)
    threshold = float(trace.dynamic_threshold[g])
    axis.axhline(threshold, color=DYNAMIC_COLOR, linestyle="--", linewidth=1.6, label=f"threshold {threshold:.3f}")
    parts = [Patch(color=ATSS_COLOR, alpha=0.55, label=f"{trace.anchor_weight:g} x AIoU"),
             Patch(color=DYNAMIC_COLOR, label=f"{trace.pred_weight:g} x PIoU")]
    _finish_bars(axis, labels, "combined IoU", "Combined IoU: stacked AIoU + PIoU parts",
                 top=max(1.0, trace.pred_weight + trace.anchor_weight), extra_handles=parts)
