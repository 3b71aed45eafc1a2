"""model.anchor_scales: auto: the centred anchor IoU by hand, and the choice on small- and large-object data."""

from __future__ import annotations

import numpy as np
import pytest

from dynatss.model.anchor_choice import (
    MIN_CLASS_IOU,
    OFFICIAL_SCALE,
    SMALL_SCALE,
    centred_anchor_iou,
    choose_anchor_scale,
)

STRIDES = [8, 16, 32, 64, 128]  # P3-P7


def test_centred_anchor_iou_by_hand():
    # A 20 x 40 box and squares of side 20 (inside: 400 / 800), 40 (box inside: 800 / 1600), 10 (100 / 800).
    ious = centred_anchor_iou(np.array([[20.0, 40.0]]), np.array([20.0, 40.0, 10.0]))
    np.testing.assert_allclose(ious, [[0.5, 0.5, 0.125]])


def _boxes(sides_and_counts):
    wh, labels = [], []
    for label, (side, count) in enumerate(sides_and_counts):
        wh += [[side, side]] * count
        labels += [label] * count
    return np.array(wh, dtype=float), np.array(labels)


def test_a_minority_of_small_objects_gets_small_anchors():
    """BCCD-like: 85% cells of 69 px, 8% of 126 px and 7% platelets of 26 px (best IoU 0.17 at 8 x)."""
    wh, labels = _boxes([(26.0, 7), (69.0, 85), (126.0, 8)])
    choice = choose_anchor_scale(wh, labels, ["platelet", "rbc", "wbc"], STRIDES)
    assert choice.scale == SMALL_SCALE
    worst = choice.fits[OFFICIAL_SCALE][0]
    assert worst.name == "platelet" and worst.median_iou == pytest.approx(26**2 / 64**2)
    assert "platelet" in choice.reason and "0.17" in choice.reason


def test_objects_too_small_for_any_anchor_point_to_the_training_scale():
    """Crowds of 12 px objects: 4 x stride still fits them at 144 / 1024 = 0.14 (P3's 32 px anchor)."""
    wh, labels = _boxes([(12.0, 90), (60.0, 10)])
    choice = choose_anchor_scale(wh, labels, ["bird", "boat"], STRIDES)
    assert choice.scale == SMALL_SCALE
    assert choice.fits[SMALL_SCALE][0].median_iou == pytest.approx(12**2 / 32**2)
    assert "larger training scale" in choice.reason and "data.min_sizes" in choice.reason
    # BCCD's platelets (26 px, 0.66 with 4 x) are served by the small anchors: no such advice.
    wh, labels = _boxes([(26.0, 7), (69.0, 85), (126.0, 8)])
    assert "larger training scale" not in choose_anchor_scale(wh, labels, ["p", "r", "w"], STRIDES).reason


def test_large_objects_keep_the_official_scale():
    """One class of large objects (a cell filling most of a 320 px image): 8 x stride fits them."""
    wh, labels = _boxes([(250.0, 50)])
    choice = choose_anchor_scale(wh, labels, ["cell"], STRIDES)
    assert choice.scale == OFFICIAL_SCALE
    assert choice.fits[OFFICIAL_SCALE][0].median_iou >= MIN_CLASS_IOU


def test_a_class_below_the_meaningful_share_does_not_decide():
    """2% of tiny objects among large ones: their class is left out, the official scale stays."""
    wh, labels = _boxes([(20.0, 2), (200.0, 98)])
    choice = choose_anchor_scale(wh, labels, ["speck", "car"], STRIDES)
    assert choice.scale == OFFICIAL_SCALE
    assert [fit.name for fit in choice.fits[OFFICIAL_SCALE]] == ["car"]


def test_no_boxes_and_degenerate_boxes_give_the_official_scale():
    assert choose_anchor_scale(np.zeros((0, 2)), np.zeros(0, int), ["a"], STRIDES).scale == OFFICIAL_SCALE
    assert choose_anchor_scale(np.zeros((3, 2)), np.zeros(3, int), ["a"], STRIDES).scale == OFFICIAL_SCALE
