"""Weights of PIoU and AIoU in the combined IoU, and the cap on positives, per training progress.

Paper Tables II-III: "dynamic" is PIoU + AIoU (1:1 was best); "piou" drops the anchors; the
schedules D_up = iter / max_iter (on PIoU) and D_down = 1 - iter / max_iter (on AIoU) were worse
and are kept as ablation switches.
"""

from __future__ import annotations

from dynatss.config import AssignConfig


def combination_weights(config: AssignConfig, progress: float) -> tuple[float, float]:
    """(pred_weight, anchor_weight) at ``progress`` = iter / max_iter in [0, 1]."""
    if config.mode == "atss":
        return 0.0, config.anchor_weight
    pred_weight = config.pred_weight * (progress if config.pred_schedule == "up" else 1.0)
    if config.mode == "piou":
        return pred_weight, 0.0
    anchor_weight = config.anchor_weight * (1.0 - progress if config.anchor_schedule == "down" else 1.0)
    return pred_weight, anchor_weight


def positive_cap(config: AssignConfig, progress: float) -> str:
    """The ``max_positives`` rule in force at ``progress``: the configured one from
    ``max_positives_from`` on, the paper's "threshold" before it."""
    return config.max_positives if progress >= config.max_positives_from else "threshold"
