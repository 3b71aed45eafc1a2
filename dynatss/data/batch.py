"""The batch the data loader hands to the model and the loss: GTs padded per image."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor


@dataclass
class Batch:
    """A collated batch. B images, G = max GTs per image, I = max ignore boxes per image.

    images:         [B, 3, H, W] uint8, resized and padded (bottom/right) to a multiple of 128;
                    stored channels-last (torch.channels_last) as decoded, call .contiguous() if needed
    gt_boxes:       [B, G, 4] float32 xyxy in resized-image pixels
    gt_labels:      [B, G] int64 contiguous labels
    gt_valid:       [B, G] bool, False for padding
    ignore_boxes:   [B, I, 4] float32 crowd / difficult boxes (resized-image pixels)
    ignore_valid:   [B, I] bool
    image_sizes:    [B, 2] int64 (height, width) of each resized image before padding
    original_sizes: [B, 2] int64 (height, width) of each original image
    image_ids:      [B] int64 dataset image ids
    """

    images: Tensor
    gt_boxes: Tensor
    gt_labels: Tensor
    gt_valid: Tensor
    ignore_boxes: Tensor
    ignore_valid: Tensor
    image_sizes: Tensor
    original_sizes: Tensor
    image_ids: Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return Batch(
            **{f.name: getattr(self, f.name).to(device, non_blocking=non_blocking) for f in fields(self)}
        )

    def pin_memory(self) -> Batch:
        return Batch(**{f.name: getattr(self, f.name).pin_memory() for f in fields(self)})

    def __len__(self) -> int:
        return self.images.shape[0]
