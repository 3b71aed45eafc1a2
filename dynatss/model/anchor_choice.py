"""``model.anchor_scales: auto``: the anchor scale chosen from the training boxes (issue 17).

ATSS's anchors are 8 x stride, sized for images resized to 800 px. At the 320-512 px of the
small-data recipe a small class can be left with no anchor that fits it: BCCD's platelets (26 px)
have a best anchor IoU of 0.17 with 8 x stride, and 4 x stride gave both ATSS and Dynamic ATSS
+9-10 AP on them (docs/results.md). A mean over all boxes hides such a class when it is a minority,
so the rule looks at every class that holds a meaningful share of the boxes:

  1. per box at the training scale, its best *centred* anchor IoU: the IoU of the box with a square
     anchor of side scale x stride sharing its centre, best over the pyramid levels;
  2. per class holding at least ``MIN_CLASS_SHARE`` of the boxes (or half the uniform share,
     whichever is smaller), the median of that IoU;
  3. the official scale 8 unless its worst such class median is below ``MIN_CLASS_IOU`` and the
     alternative 4 serves that worst class better. When even 4 leaves it below, the line says that
     a larger training scale would serve it: anchors alone cannot (boxes under about 17 px at P3).

Only the two measured scales are offered: 8 (the official) and 4 (measured on BCCD, aquarium and
aerial_cars). The choice and its reason are returned as one line for the run log.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The official ATSS scale first; the alternative measured in docs/results.md.
OFFICIAL_SCALE = 8.0
SMALL_SCALE = 4.0
# A class is "meaningful" with at least this share of the boxes, or half the uniform share 1 / (2C)
# when that is smaller (many classes).
MIN_CLASS_SHARE = 0.05
# Median best centred anchor IoU below which a class counts as unserved by its anchors: BCCD's
# platelets (0.17 at 8 x stride) gained 9-10 AP from 4 x; red and white cells (0.72-0.79) lost 2-5.
MIN_CLASS_IOU = 0.3


@dataclass(frozen=True)
class ClassFit:
    """How well one scale's anchors fit one class: median best centred IoU of its boxes."""

    name: str
    share: float
    median_side: float  # sqrt(w h), training-scale pixels
    median_iou: float


@dataclass(frozen=True)
class AnchorChoice:
    """The chosen scale, every meaningful class's fit per scale offered, and the reason in one line."""

    scale: float
    fits: dict[float, list[ClassFit]]  # scale -> the meaningful classes, worst first
    reason: str


def centred_anchor_iou(box_wh: np.ndarray, anchor_sides: np.ndarray) -> np.ndarray:
    """IoU of boxes [N, 2] (w, h) with centred squares of sides [L]: [N, L]."""
    w, h = box_wh[:, 0:1], box_wh[:, 1:2]  # [N, 1]
    inter = np.minimum(w, anchor_sides) * np.minimum(h, anchor_sides)  # [N, L]
    return inter / (w * h + anchor_sides**2 - inter)


def class_fits(box_wh: np.ndarray, labels: np.ndarray, class_names: list[str], strides: list[int],
               scale: float) -> list[ClassFit]:
    """The meaningful classes' fits for one scale, worst (lowest median IoU) first."""
    best = centred_anchor_iou(box_wh, scale * np.asarray(strides, dtype=np.float64)).max(axis=1)  # [N]
    counts = np.bincount(labels, minlength=len(class_names))
    min_share = min(MIN_CLASS_SHARE, 0.5 / len(class_names))
    fits = []
    for index, name in enumerate(class_names):
        share = counts[index] / max(len(labels), 1)
        if counts[index] == 0 or share < min_share:
            continue
        mine = labels == index
        side = np.sqrt(box_wh[mine, 0] * box_wh[mine, 1])
        fits.append(ClassFit(name, float(share), float(np.median(side)), float(np.median(best[mine]))))
    return sorted(fits, key=lambda fit: fit.median_iou)


def choose_anchor_scale(box_wh: np.ndarray, labels: np.ndarray, class_names: list[str],
                        strides: list[int]) -> AnchorChoice:
    """The anchor scale for boxes ``box_wh`` [N, 2] (w, h in training-scale pixels) of ``labels`` [N]."""
    box_wh = np.asarray(box_wh, dtype=np.float64).reshape(-1, 2)
    keep = (box_wh > 0).all(axis=1)
    box_wh, labels = box_wh[keep], np.asarray(labels, dtype=np.int64)[keep]
    if not len(box_wh):
        return AnchorChoice(OFFICIAL_SCALE, {}, "no boxes to measure: the official 8 x stride")
    fits = {scale: class_fits(box_wh, labels, class_names, strides, scale) for scale in (OFFICIAL_SCALE, SMALL_SCALE)}
    worst = fits[OFFICIAL_SCALE][0]
    small_fit = next(fit for fit in fits[SMALL_SCALE] if fit.name == worst.name)
    described = (f"'{worst.name}' ({100 * worst.share:.0f}% of the boxes, median side {worst.median_side:.0f} px "
                 f"at the training scale) has a median best anchor IoU of {worst.median_iou:.2f} with "
                 f"{OFFICIAL_SCALE:g} x stride and {small_fit.median_iou:.2f} with {SMALL_SCALE:g} x")
    if worst.median_iou < MIN_CLASS_IOU and small_fit.median_iou > worst.median_iou:
        reason = f"{SMALL_SCALE:g} x stride: {described} (< {MIN_CLASS_IOU:g})"
        if small_fit.median_iou < MIN_CLASS_IOU:  # no offered anchor fits it: its boxes are too small
            reason += (f"; still < {MIN_CLASS_IOU:g} with {SMALL_SCALE:g} x: a larger training scale "
                       "(data.min_sizes, or data.crop_size for large photos) would serve it")
        return AnchorChoice(SMALL_SCALE, fits, reason)
    return AnchorChoice(OFFICIAL_SCALE, fits, f"{OFFICIAL_SCALE:g} x stride: the worst-served class {described}")
