"""Per-image transforms (torchvision.transforms.v2) and image decoding.

Images stay uint8 [3, H, W] in 0..255: the model normalises inside, so nothing here converts to
float. Boxes travel as ``tv_tensors.BoundingBoxes`` (XYXY, canvas_size) so torchvision moves them
with the pixels. Training: resize keeping the aspect ratio with the shorter side drawn per image from
``min_sizes`` and the longer side at most ``max_size`` (detectron2's ResizeShortestEdge), horizontal
flip, optional colour jitter. Test: shorter side ``test_min_size``, no flip. No side is ever resized
below 1 pixel (a 4000 x 4 image under ``max_size`` 512 keeps a 1-pixel side). Decoding is
:mod:`dynatss.data.decode`'s, the same for every reader of pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2

from dynatss.config import DEFAULT_MAX_IMAGE_PIXELS, DataConfig
from dynatss.data.decode import decode_image

# Objects less than this fraction inside a training crop (data.crop_size) become ignore regions:
# neither positives nor negatives, so a sliver of a car at the crop border teaches nothing wrong.
CROP_MIN_VISIBLE = 0.5
# Mild photometric jitter when data_cfg.color_jitter is on (off by default, as ATSS).
_JITTER = {"brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.02}


class ResizeShortestEdge(v2.RandomShortestSize):
    """torchvision's RandomShortestSize (same draws, same sizes) with every side kept >= 1 pixel.

    RandomShortestSize truncates ``side * scale`` to an int, which is 0 for the short side of an
    extreme aspect ratio (4000 x 4 capped by ``max_size``) and makes ``resize`` fail.
    """

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = super().make_params(flat_inputs)["size"]
        return dict(size=(max(1, height), max(1, width)))


def build_transforms(data_cfg: DataConfig, *, train: bool) -> v2.Transform:
    """The v2 pipeline applied to (image uint8 [3, H, W], BoundingBoxes [N, 4])."""
    if not train:
        return ResizeShortestEdge(min_size=[data_cfg.test_min_size], max_size=data_cfg.max_size)
    steps: list[v2.Transform] = [
        ResizeShortestEdge(min_size=list(data_cfg.min_sizes), max_size=data_cfg.max_size),
        v2.RandomHorizontalFlip(p=data_cfg.hflip_prob),
    ]
    if data_cfg.color_jitter:
        steps.append(v2.ColorJitter(**_JITTER))
    return v2.Compose(steps)


def resize_for_test(image: Tensor, data_cfg: DataConfig) -> Tensor:
    """The evaluation resize of one ``[3, H, W]`` uint8 image: shorter side ``test_min_size``, longer
    at most ``max_size``, aspect ratio kept; bilinear with antialiasing (torchvision's ``resize`` of
    a tensor). The test loader applies this same transform (:func:`build_transforms`)."""
    resized = build_transforms(data_cfg, train=False)(tv_tensors.Image(image))
    return resized.as_subclass(Tensor)


def load_image(path: Path, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Tensor:
    """Decode an image file to uint8 RGB [3, H, W], EXIF orientation applied (any bit depth).

    Raises DynatssError (one line, naming the file) if the file cannot be read or decoded, or has
    more than ``max_pixels`` pixels.
    """
    return decode_image(path, max_pixels=max_pixels)


def transform_sample(transform: v2.Transform, image: Tensor, boxes_xyxy: Tensor) -> tuple[Tensor, Tensor]:
    """Apply ``transform`` to image [3, H, W] uint8 and boxes [N, 4]; returns both transformed."""
    boxes = tv_tensors.BoundingBoxes(
        boxes_xyxy, format=tv_tensors.BoundingBoxFormat.XYXY, canvas_size=tuple(image.shape[-2:])
    )
    out_image, out_boxes = transform(tv_tensors.Image(image), boxes)
    return out_image.as_subclass(torch.Tensor), out_boxes.as_subclass(torch.Tensor)


def random_crop(image: Tensor, boxes_xyxy: Tensor, ignore: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """A ``size`` x ``size`` window at a random place (torch's global generator) of a training image.

    image [3, H, W]; boxes [N, 4] xyxy pixels; ignore [N] bool. A side shorter than ``size`` is kept
    whole. Returns the cropped image, the boxes that overlap it (shifted and clipped to it), the
    mask [N] of those boxes among the inputs, and their ignore flags, set for boxes less than
    CROP_MIN_VISIBLE inside the window.
    """
    height, width = image.shape[-2:]
    top = int(torch.randint(0, max(height - size, 0) + 1, ()))
    left = int(torch.randint(0, max(width - size, 0) + 1, ()))
    image = image[:, top : top + size, left : left + size]
    crop_h, crop_w = image.shape[-2:]
    shifted = boxes_xyxy - boxes_xyxy.new_tensor([left, top, left, top])  # [N, 4]
    limits = shifted.new_tensor([crop_w, crop_h, crop_w, crop_h])
    clipped = torch.minimum(shifted.clamp(min=0), limits)  # [N, 4]
    area = (shifted[:, 2:] - shifted[:, :2]).clamp(min=0).prod(dim=1)  # [N]
    visible_area = (clipped[:, 2:] - clipped[:, :2]).clamp(min=0).prod(dim=1)  # [N]
    inside = visible_area > 0
    partly = visible_area < CROP_MIN_VISIBLE * area
    return image, clipped[inside], inside, (ignore | partly)[inside]
