"""Training-curve figures (matplotlib, Agg, no pyplot state): raw values faint, moving average solid.

A leaf of the package: figures and PNG bytes, no files (callers write them atomically). Used by
``compare`` (several runs on shared axes, the paper's Figs. 2-4) and ``report`` (one run).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure

RAW_ALPHA = 0.35
BAND_ALPHA = 0.15
PANEL_SIZE = (5.5, 4.0)  # inches per panel
DPI = 110
MAX_COLUMNS = 3
# Automatic smoothing: the moving-average window is this fraction of the number of points, at
# least MIN_AUTO_WINDOW points (short runs log few points: a 1-point window would hide the raw
# line under the average) and at most half the points.
AUTO_WINDOW_FRACTION = 0.05
MIN_AUTO_WINDOW = 5
# Tick counts: enough labelled values on every panel to read a level off the axis.
MAX_TICKS = 6
# A log axis pays off only when the values span at least this many decades; below, linear ticks.
MIN_LOG_DECADES = 1.0
# Log-axis ticks per decade: labelled mantissas by the span in decades (narrow spans need more).
LOG_SUBS_BY_SPAN = ((2.0, (1.0, 2.0, 3.0, 5.0)), (4.0, (1.0, 3.0)), (float("inf"), (1.0,)))


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


def _plain_label(value: float, _position: int) -> str:
    """Log-axis values as plain numbers (0.6, not 6e-01)."""
    return f"{value:g}" if value > 0 else ""


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Centred mean over ``window`` points (fewer at both ends); same length as ``values``.

    Centred, not trailing: a trailing mean lags a falling loss and sits above every raw value of a
    short run, which reads as a different curve.
    """
    if window <= 1 or values.size == 0:
        return values.astype(np.float64)
    sums = np.cumsum(np.concatenate([[0.0], values.astype(np.float64)]))
    index = np.arange(values.size)
    starts = np.maximum(index - (window - 1) // 2, 0)
    ends = np.minimum(index + window // 2 + 1, values.size)
    return (sums[ends] - sums[starts]) / (ends - starts)


def auto_window(num_points: int) -> int:
    """The moving-average window (points) used when none is given."""
    return max(1, min(max(MIN_AUTO_WINDOW, int(num_points * AUTO_WINDOW_FRACTION)), num_points // 2))


def figure_png(figure: Figure, dpi: int = DPI) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def panels_png(
    curves: dict[str, list[Curve]],
    panels: tuple[Panel, ...] | list[Panel],
    *,
    title: str,
    smooth: int | None = None,
) -> bytes:
    """``panels`` side by side, each with its curves from ``curves[panel.key]``, as PNG bytes."""
    return figure_png(build_figure(curves, panels, title=title, smooth=smooth))


def build_figure(
    curves: dict[str, list[Curve]], panels: tuple[Panel, ...] | list[Panel], *, title: str, smooth: int | None = None
) -> Figure:
    """The figure of :func:`panels_png`: one axes per panel, raw faint, moving average solid."""
    columns = 2 if len(panels) == 4 else min(len(panels), MAX_COLUMNS)
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows), layout="constrained")
    axes = np.atleast_1d(figure.subplots(rows, columns)).ravel()
    for unused in axes[len(panels):]:
        unused.set_visible(False)
    labels = sorted({c.label for key in curves for c in curves[key]}, key=_first_seen(curves))
    colors = {label: f"C{index % 10}" for index, label in enumerate(labels)}
    legend_drawn = False
    windows: set[int] = set()
    for axis, panel in zip(axes, panels):
        drawn = _draw_panel(axis, panel, curves.get(panel.key, []), colors, smooth)
        windows.update(drawn)
        if drawn and not legend_drawn:
            axis.legend(loc="best", fontsize="small")
            legend_drawn = True
    # One panel is too narrow for the title and the note on one line (the ends were cut off).
    separator = ":\n" if columns == 1 else ": "
    figure.suptitle(f"{title}{separator}{_smoothing_note(windows)}", fontsize="medium")
    return figure


def _smoothing_note(windows: set[int]) -> str:
    """What the lines are, for the figure title: the raw values, and the window actually used."""
    smoothed = sorted(w for w in windows if w > 1)
    if not smoothed:
        return "raw values, not smoothed"
    span = str(smoothed[0]) if len(smoothed) == 1 else f"{smoothed[0]}-{smoothed[-1]}"
    return f"faint: raw values, solid: centred moving average over {span} logged points"


def _first_seen(curves: dict[str, list[Curve]]):
    order: dict[str, int] = {}
    for key in curves:
        for curve in curves[key]:
            order.setdefault(curve.label, len(order))
    return lambda label: order[label]


def _draw_panel(axis, panel: Panel, curves: list[Curve], colors: dict[str, str], smooth: int | None) -> list[int]:
    """Draw one panel's curves; returns the moving-average window of each (empty: nothing drawn)."""
    axis.set_title(panel.title)
    axis.set_xlabel("iteration")
    axis.set_ylabel(panel.ylabel)
    axis.grid(True, alpha=0.3)
    curves = [c for c in curves if c.iters.size]
    if not curves:
        axis.text(0.5, 0.5, f"no '{panel.key}' values logged", ha="center", va="center", transform=axis.transAxes)
        return []
    windows = []
    for curve in curves:
        window = smooth if smooth is not None else auto_window(curve.iters.size)
        windows.append(max(1, window))
        color = colors[curve.label]
        smoothed = moving_average(curve.values, window)
        if window > 1:  # the raw values faint behind their moving average
            axis.plot(curve.iters, curve.values, color=color, alpha=RAW_ALPHA, linewidth=1.0)
        axis.plot(curve.iters, smoothed, color=color, linewidth=1.8, label=curve.label)
        if curve.spread is not None:
            spread = moving_average(curve.spread, window)
            axis.fill_between(curve.iters, smoothed - spread, smoothed + spread, color=color, alpha=BAND_ALPHA)
    _set_ticks(axis, np.concatenate([c.values for c in curves]), log_scale=panel.log_scale)
    return windows


def _set_ticks(axis, values: np.ndarray, *, log_scale: bool) -> None:
    """Integer iteration ticks; y ticks that label several values whatever the range.

    A log axis is used for a log panel only when its positive values span at least
    MIN_LOG_DECADES (a loss between 0.55 and 0.65 on a log axis shows one tick or none); its labelled
    ticks per decade depend on the span, so a narrow span still shows several numbers.
    """
    axis.xaxis.set_major_locator(ticker.MaxNLocator(nbins=MAX_TICKS, integer=True))
    finite = values[np.isfinite(values)]
    span = math.log10(finite.max() / finite.min()) if finite.size and finite.min() > 0 else 0.0
    if not (log_scale and span >= MIN_LOG_DECADES):
        axis.yaxis.set_major_locator(ticker.MaxNLocator(nbins=MAX_TICKS))
        return
    axis.set_yscale("log")
    subs = next(subs for limit, subs in LOG_SUBS_BY_SPAN if span < limit)
    axis.yaxis.set_major_locator(ticker.LogLocator(base=10.0, subs=subs))
    axis.yaxis.set_major_formatter(ticker.FuncFormatter(_plain_label))
    axis.yaxis.set_minor_locator(ticker.LogLocator(base=10.0, subs=np.arange(1.0, 10.0)))
    axis.yaxis.set_minor_formatter(ticker.NullFormatter())
