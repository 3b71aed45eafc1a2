"""Training-curve figures (matplotlib, Agg, no pyplot state): raw values faint, moving average solid.

Used by ``compare`` (several runs on shared axes, the paper's Figs. 2-4) and ``report`` (one run).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure

from dynatss.atomic import atomic_write_bytes

RAW_ALPHA = 0.25
BAND_ALPHA = 0.15
PANEL_SIZE = (5.5, 4.0)  # inches per panel
DPI = 110
MAX_COLUMNS = 3
# Automatic smoothing: the moving-average window is this fraction of the number of points.
AUTO_WINDOW_FRACTION = 0.05


@dataclass(frozen=True)
class Panel:
    """One subplot: the metrics.jsonl key it shows, its title and y-axis label, log scale or not."""

    key: str
    title: str
    ylabel: str
    log_scale: bool


@dataclass(frozen=True)
class Curve:
    """One run's (or a group's mean) values of one key; ``spread`` is the group's std, if any."""

    label: str
    iters: np.ndarray  # [N]
    values: np.ndarray  # [N]
    spread: np.ndarray | None = None  # [N]


LOSS_BOX = Panel("loss_box", "Regression (box) loss", "loss_box", log_scale=True)
LOSS_PANELS = (
    Panel("loss_cls", "Classification loss", "loss_cls", log_scale=True),
    Panel("loss_quality", "Quality (IoU / centerness) loss", "loss_quality", log_scale=True),
)
ASSIGN_PANELS = (
    Panel("pos_per_gt", "Positives per ground-truth box", "positives / GT", log_scale=False),
    Panel("mean_piou", "Mean predicted IoU of positives", "PIoU", log_scale=False),
    Panel("mean_aiou", "Mean anchor IoU of positives", "AIoU", log_scale=False),
)


# Log-axis values labelled as plain numbers (0.6, not 6e-01); losses span a decade or two at most.
LOG_LABELLED_MANTISSAS = (1, 2, 3, 5)


def _plain_log_label(value: float, _position: int) -> str:
    if value <= 0:
        return ""
    mantissa = value / 10 ** math.floor(math.log10(value))
    labelled = any(math.isclose(mantissa, m, rel_tol=1e-6) for m in LOG_LABELLED_MANTISSAS)
    return f"{value:g}" if labelled else ""


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over the last ``window`` points (fewer at the start); same length as ``values``."""
    if window <= 1 or values.size == 0:
        return values.astype(np.float64)
    sums = np.cumsum(np.concatenate([[0.0], values.astype(np.float64)]))
    ends = np.arange(1, values.size + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def auto_window(num_points: int) -> int:
    return max(1, int(num_points * AUTO_WINDOW_FRACTION))


def plot_panels(
    curves: dict[str, list[Curve]],
    panels: tuple[Panel, ...] | list[Panel],
    path: str | Path,
    *,
    title: str,
    smooth: int | None = None,
) -> Path:
    """Draw ``panels`` side by side, each with its curves from ``curves[panel.key]``; write a PNG."""
    columns = 2 if len(panels) == 4 else min(len(panels), MAX_COLUMNS)
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows), layout="constrained")
    axes = np.atleast_1d(figure.subplots(rows, columns)).ravel()
    for unused in axes[len(panels):]:
        unused.set_visible(False)
    labels = sorted({c.label for key in curves for c in curves[key]}, key=_first_seen(curves))
    colors = {label: f"C{index % 10}" for index, label in enumerate(labels)}
    legend_drawn = False
    for axis, panel in zip(axes, panels):
        drawn = _draw_panel(axis, panel, curves.get(panel.key, []), colors, smooth)
        if drawn and not legend_drawn:
            axis.legend(loc="best", fontsize="small")
            legend_drawn = True
    window_note = "auto" if smooth is None else str(smooth)
    figure.suptitle(f"{title}: faint raw, solid moving average (window {window_note})", fontsize="medium")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return atomic_write_bytes(path, buffer.getvalue())


def _first_seen(curves: dict[str, list[Curve]]):
    order: dict[str, int] = {}
    for key in curves:
        for curve in curves[key]:
            order.setdefault(curve.label, len(order))
    return lambda label: order[label]


def _draw_panel(axis, panel: Panel, curves: list[Curve], colors: dict[str, str], smooth: int | None) -> bool:
    axis.set_title(panel.title)
    axis.set_xlabel("iteration")
    axis.set_ylabel(panel.ylabel)
    axis.grid(True, alpha=0.3)
    curves = [c for c in curves if c.iters.size]
    if not curves:
        axis.text(0.5, 0.5, f"no '{panel.key}' values logged", ha="center", va="center", transform=axis.transAxes)
        return False
    for curve in curves:
        window = smooth if smooth is not None else auto_window(curve.iters.size)
        color = colors[curve.label]
        axis.plot(curve.iters, curve.values, color=color, alpha=RAW_ALPHA, linewidth=0.8)
        smoothed = moving_average(curve.values, window)
        axis.plot(curve.iters, smoothed, color=color, linewidth=1.8, label=curve.label)
        if curve.spread is not None:
            spread = moving_average(curve.spread, window)
            axis.fill_between(curve.iters, smoothed - spread, smoothed + spread, color=color, alpha=BAND_ALPHA)
    if panel.log_scale and all(np.all(c.values > 0) for c in curves):
        axis.set_yscale("log")
        axis.yaxis.set_major_formatter(ticker.FuncFormatter(_plain_log_label))
        axis.yaxis.set_minor_formatter(ticker.FuncFormatter(_plain_log_label))
    return True
