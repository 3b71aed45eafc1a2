"""The settings a recipe leaves to the training data, resolved before the first step (issue 17).

``model.anchor_scales: auto`` becomes the scale :func:`dynatss.model.anchor_choice.choose_anchor_scale`
picks from the training boxes at the training scale, and ``solver.epochs`` becomes ``max_iter`` and
``steps`` (:func:`dynatss.engine.lr_schedule.schedule_in_epochs`). The resolved values replace the
requests in the run's config.yaml, so evaluation, export and resume see what was trained.
"""

from __future__ import annotations

import copy
import statistics

import numpy as np

from dynatss.config import Config, DataConfig
from dynatss.data.records import DatasetMeta, ImageRecord
from dynatss.engine.lr_schedule import schedule_in_epochs
from dynatss.model.anchor_choice import choose_anchor_scale


def training_scale(record: ImageRecord, data: DataConfig) -> float:
    """The resize factor of an image in training: the mean shorter side, the longer side capped."""
    shorter, longer = min(record.width, record.height), max(record.width, record.height)
    return min(statistics.fmean(data.min_sizes) / shorter, data.max_size / longer)


def training_box_sizes(records: list[ImageRecord], data: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """(w, h) [N, 2] of every non-ignored box at the training scale, and its label [N]."""
    sizes, labels = [np.zeros((0, 2))], [np.zeros((0,), np.int64)]
    for record in records:
        keep = ~record.ignore
        boxes = record.boxes[keep].astype(np.float64) * training_scale(record, data)  # [n, 4]
        sizes.append(boxes[:, 2:] - boxes[:, :2])
        labels.append(record.labels[keep])
    return np.concatenate(sizes), np.concatenate(labels)


def resolve_from_data(cfg: Config, records: list[ImageRecord], meta: DatasetMeta) -> tuple[Config, list[str]]:
    """A copy of ``cfg`` with ``anchor_scales: auto`` and ``solver.epochs`` resolved, and one log
    line per resolved setting (none when the config asks for neither)."""
    cfg = copy.deepcopy(cfg)
    notes = []
    if cfg.model.anchor_scales == "auto":
        box_wh, labels = training_box_sizes(records, cfg.data)
        strides = [2**level for level in range(cfg.model.min_level, cfg.model.max_level + 1)]
        choice = choose_anchor_scale(box_wh, labels, list(meta.class_names), strides)
        cfg.model.anchor_scales = [choice.scale]
        notes.append(f"anchors: auto -> {choice.reason}")
    if cfg.solver.epochs is not None:
        solver = cfg.solver
        solver.max_iter, solver.steps = schedule_in_epochs(solver, len(records))
        notes.append(f"schedule: {solver.epochs:g} epochs of {len(records)} images at batch {solver.batch_size} -> "
                     f"{solver.max_iter} steps (at least {solver.min_iter}), lr x{solver.gamma:g} at {solver.steps}")
    return cfg, notes
