"""Crowd / ignore regions (COCO iscrowd, VOC difficult).

Such boxes are never positives (they are not GTs of the assigner). Anchors whose box lies mostly
inside one (intersection over the anchor's own area >= ``iof_threshold``) are left out of the
classification loss instead of being pushed towards background.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dynatss.boxes import elementwise_box_iof

# Ignore boxes handled per chunk so that memory stays at A x chunk, whatever their number.
_IGNORE_CHUNK = 64


def ignored_anchors(
    anchors: Tensor, ignore_boxes: Tensor, ignore_valid: Tensor, *, iof_threshold: float = 0.5
) -> Tensor:
    """[B, A] bool: the anchor lies at least ``iof_threshold`` inside some valid ignore box.

    anchors: [A, 4]; ignore_boxes: [B, I, 4]; ignore_valid: [B, I] bool.
    """
    batch, num_ignore = ignore_valid.shape
    ignored = torch.zeros(batch, anchors.shape[0], dtype=torch.bool, device=anchors.device)
    for start in range(0, num_ignore, _IGNORE_CHUNK):
        regions = ignore_boxes[:, start : start + _IGNORE_CHUNK]  # [B, I_c, 4]
        valid = ignore_valid[:, start : start + _IGNORE_CHUNK]  # [B, I_c]
        iof = elementwise_box_iof(anchors.view(1, -1, 1, 4), regions.unsqueeze(1))  # [B, A, I_c]
        inside = (iof >= iof_threshold) & valid.unsqueeze(1)
        ignored = ignored | inside.any(dim=-1)
    return ignored
