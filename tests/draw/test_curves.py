"""Training-curve figures: the raw line behind its moving average, and readable ticks on every panel."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from dynatss.draw.curves import Curve, Panel, auto_window, build_figure, moving_average

PANELS = (
    Panel("narrow", "Quality loss (0.55-0.65)", "loss_quality", log_scale=True),
    Panel("wide", "Loss over two decades", "loss", log_scale=True),
    Panel("linear", "Positives per GT", "positives / GT", log_scale=False),
)


def _curves(num_points: int) -> dict[str, list[Curve]]:
    rng = np.random.default_rng(0)
    iters = np.arange(1, num_points + 1) * 20
    narrow = 0.6 + 0.04 * np.sin(iters / 200) + rng.normal(0, 0.01, num_points)
    wide = 3 * np.exp(-iters / (iters[-1] / 5)) + 0.02 + rng.uniform(0, 0.01, num_points)
    linear = 6 + rng.normal(0, 0.5, num_points)
    return {key: [Curve("run", iters, values)] for key, values in
            (("narrow", narrow), ("wide", wide), ("linear", linear))}


def _labelled_ticks(axis) -> list[str]:
    low, high = sorted(axis.get_ylim())
    major = [(tick, label.get_text()) for tick, label in zip(axis.get_yticks(), axis.get_yticklabels())]
    minor = [(tick, label.get_text()) for tick, label in
             zip(axis.get_yticks(minor=True), axis.get_yticklabels(minor=True))]
    return [text for tick, text in major + minor if text and low <= tick <= high]


@pytest.mark.parametrize("num_points", [8, 30, 150])
def test_each_panel_draws_the_raw_values_faint_behind_the_moving_average(num_points):
    curves = _curves(num_points)
    figure = build_figure(curves, PANELS, title="Losses")
    figure.draw_without_rendering()
    window = auto_window(num_points)
    assert window > 1
    for axis, panel in zip(figure.axes, PANELS):
        raw, smoothed = axis.get_lines()
        values = curves[panel.key][0].values
        np.testing.assert_allclose(raw.get_ydata(), values)
        np.testing.assert_allclose(smoothed.get_ydata(), moving_average(values, window))
        assert raw.get_alpha() < 1 and (smoothed.get_alpha() or 1) == 1
        assert not np.allclose(raw.get_ydata(), smoothed.get_ydata())
    assert f"moving average over {window} logged points" in figure.get_suptitle()


def test_every_panel_labels_several_y_values():
    figure = build_figure(_curves(150), PANELS, title="Losses")
    figure.draw_without_rendering()
    narrow, wide, linear = figure.axes
    assert narrow.get_yscale() == "linear"  # less than a decade: a log axis would show one tick
    assert wide.get_yscale() == "log"
    for axis in figure.axes:
        labels = _labelled_ticks(axis)
        assert len(labels) >= 3, (axis.get_title(), labels)
        assert all("e" not in text for text in labels)  # plain numbers, not 6e-01
        assert len(_labelled_x(axis)) >= 3


def _labelled_x(axis) -> list[str]:
    low, high = axis.get_xlim()
    return [label.get_text() for tick, label in zip(axis.get_xticks(), axis.get_xticklabels())
            if label.get_text() and low <= tick <= high]


def test_a_window_of_one_draws_one_line_and_says_so():
    figure = build_figure(_curves(30), PANELS, title="Losses", smooth=1)
    assert all(len(axis.get_lines()) == 1 for axis in figure.axes)
    assert "raw values" in figure.get_suptitle() and "faint" not in figure.get_suptitle()


@pytest.mark.parametrize("panels", [PANELS[:1], PANELS])
def test_the_title_fits_inside_the_figure(panels):
    """The regression-loss figure of `compare` (one panel) had the ends of its title cut off."""
    figure = build_figure(_curves(30), panels, title="Regression loss")
    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    title = figure._suptitle.get_window_extent(renderer)
    assert 0 <= title.x0 and title.x1 <= figure.bbox.x1, (title, figure.bbox)
