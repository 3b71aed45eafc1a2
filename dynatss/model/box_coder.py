"""Box coding: xyxy boxes <-> regression deltas relative to anchors (Faster R-CNN parametrisation).

The head regresses deltas (dx, dy, dw, dh); the paper decodes them into predicted boxes to compute
the predicted IoUs (PIoU) used for dynamic label assignment (Sec. III.B), so the coder is shared by
the model, the criterion and post-processing.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# ATSS / Faster R-CNN regression weights (wx, wy, ww, wh).
DEFAULT_BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
# Largest log-ratio decoded for width/height: a box may grow at most 1000/16 times its anchor
# (torchvision / detectron2's bbox_xform_clip), which keeps exp() finite for wild deltas.
DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


class BoxCoder:
    """Encode boxes as deltas relative to anchors and decode them back; batched, pure.

    dx = wx * (gx - ax) / aw,  dy = wy * (gy - ay) / ah,
    dw = ww * log(gw / aw),    dh = wh * log(gh / ah),
    with (x, y) box centres and (w, h) widths/heights; boxes are xyxy in input pixels.
    """

    def __init__(
        self,
        *,
        weights: tuple[float, float, float, float] = DEFAULT_BOX_WEIGHTS,
        scale_clamp: float = DEFAULT_SCALE_CLAMP,
    ) -> None:
        if len(weights) != 4:
            raise ValueError(f"box coder needs 4 weights, got {weights!r}")
        self.weights = tuple(float(w) for w in weights)
        self.scale_clamp = float(scale_clamp)

    def __repr__(self) -> str:
        return f"BoxCoder(weights={self.weights}, scale_clamp={self.scale_clamp:.4f})"

    def encode(self, boxes: Tensor, anchors: Tensor) -> Tensor:
        """Deltas that turn ``anchors`` into ``boxes``: [..., 4] each (broadcastable) -> [..., 4]."""
        wx, wy, ww, wh = self.weights
        anchor_w = anchors[..., 2] - anchors[..., 0]
        anchor_h = anchors[..., 3] - anchors[..., 1]
        anchor_x = anchors[..., 0] + 0.5 * anchor_w
        anchor_y = anchors[..., 1] + 0.5 * anchor_h
        box_w = boxes[..., 2] - boxes[..., 0]
        box_h = boxes[..., 3] - boxes[..., 1]
        box_x = boxes[..., 0] + 0.5 * box_w
        box_y = boxes[..., 1] + 0.5 * box_h
        dx = wx * (box_x - anchor_x) / anchor_w
        dy = wy * (box_y - anchor_y) / anchor_h
        dw = ww * torch.log(box_w / anchor_w)
        dh = wh * torch.log(box_h / anchor_h)
        return torch.stack((dx, dy, dw, dh), dim=-1)

    def decode(self, deltas: Tensor, anchors: Tensor) -> Tensor:
        """Boxes from ``deltas`` [..., A, 4] and ``anchors`` [A, 4] (broadcastable) -> [..., A, 4]."""
        wx, wy, ww, wh = self.weights
        anchor_w = anchors[..., 2] - anchors[..., 0]
        anchor_h = anchors[..., 3] - anchors[..., 1]
        anchor_x = anchors[..., 0] + 0.5 * anchor_w
        anchor_y = anchors[..., 1] + 0.5 * anchor_h
        dx = deltas[..., 0] / wx
        dy = deltas[..., 1] / wy
        dw = (deltas[..., 2] / ww).clamp(max=self.scale_clamp)
        dh = (deltas[..., 3] / wh).clamp(max=self.scale_clamp)
        center_x = dx * anchor_w + anchor_x
        center_y = dy * anchor_h + anchor_y
        half_w = 0.5 * torch.exp(dw) * anchor_w
        half_h = 0.5 * torch.exp(dh) * anchor_h
        return torch.stack(
            (center_x - half_w, center_y - half_h, center_x + half_w, center_y + half_h), dim=-1
        )
