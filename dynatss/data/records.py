"""The one record every dataset reader produces (detectron2's "standard dataset dict", typed).

Readers (COCO, VOC, YOLO, synthetic) turn their files into :class:`ImageRecord` objects; a separate
step (transforms + collate) turns records into tensors. Boxes are xyxy in original-image pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ImageRecord:
    """One image and its annotations.

    boxes:  [N, 4] float32 xyxy in pixels of the original image (0-based, continuous coordinates)
    labels: [N] int64 contiguous class index in 0..C-1
    ignore: [N] bool, True for crowd (COCO iscrowd) / difficult (VOC) boxes: never positives,
            and anchors mostly inside them are left out of the classification loss.
    """

    image_id: int
    path: Path
    width: int
    height: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    ignore: np.ndarray = field(default_factory=lambda: np.zeros((0,), bool))


@dataclass(frozen=True)
class DatasetMeta:
    """Class names and the dataset's own category ids, both indexed by contiguous label."""

    class_names: tuple[str, ...]
    category_ids: tuple[int, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)
