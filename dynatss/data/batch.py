"""The batch the data loader hands to the model and the loss: GTs padded per image."""

from __future__ import annotations

import math
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


def pad_images(images: list[Tensor], size_divisibility: int) -> Tensor:
    """Stack ``[3, h_i, w_i]`` uint8 images into ``[B, 3, H, W]``, zero-padded at the bottom/right to
    the largest size rounded up to a multiple of ``size_divisibility``; the one padding of training,
    evaluation and prediction (dynatss.model.inference).

    Channels-last memory (the shape is still [B, 3, H, W]): decoded and resized images are
    interleaved HWC in memory, and copying them into a CHW-contiguous batch costs more than decoding.
    """
    height = math.ceil(max(image.shape[-2] for image in images) / size_divisibility) * size_divisibility
    width = math.ceil(max(image.shape[-1] for image in images) / size_divisibility) * size_divisibility
    batch = torch.zeros((len(images), height, width, 3), dtype=images[0].dtype).permute(0, 3, 1, 2)
    for index, image in enumerate(images):
        batch[index, :, : image.shape[-2], : image.shape[-1]] = image
    return batch
