"""Per-image transforms (torchvision.transforms.v2) and image decoding.

Images stay uint8 [3, H, W] in 0..255: the model normalises inside, so nothing here converts to
float. Boxes travel as ``tv_tensors.BoundingBoxes`` (XYXY, canvas_size) so torchvision moves them
with the pixels. Training: resize keeping the aspect ratio with the shorter side drawn per image from
``min_sizes`` and the longer side at most ``max_size`` (detectron2's ResizeShortestEdge), horizontal
flip, optional colour jitter. Test: shorter side ``test_min_size``, no flip.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.io import ImageReadMode, decode_image, read_file
from torchvision.transforms import v2

from dynatss.config import DataConfig
from dynatss.errors import DynatssError

# Objects less than this fraction inside a training crop (data.crop_size) become ignore regions:
# neither positives nor negatives, so a sliver of a car at the crop border teaches nothing wrong.
CROP_MIN_VISIBLE = 0.5
# Mild photometric jitter when data_cfg.color_jitter is on (off by default, as ATSS).
_JITTER = {"brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.02}


def build_transforms(data_cfg: DataConfig, *, train: bool) -> v2.Transform:
    """The v2 pipeline applied to (image uint8 [3, H, W], BoundingBoxes [N, 4])."""
    if not train:
        return v2.RandomShortestSize(min_size=[data_cfg.test_min_size], max_size=data_cfg.max_size)
    steps: list[v2.Transform] = [
        v2.RandomShortestSize(min_size=list(data_cfg.min_sizes), max_size=data_cfg.max_size),
        v2.RandomHorizontalFlip(p=data_cfg.hflip_prob),
    ]
    if data_cfg.color_jitter:
        steps.append(v2.ColorJitter(**_JITTER))
    return v2.Compose(steps)


def load_image(path: Path) -> Tensor:
    """Decode an image file to uint8 RGB [3, H, W], EXIF orientation applied.

    Raises DynatssError (one line, naming the file) if the file cannot be read or decoded.
    """
    try:
        data = read_file(str(path))
        return decode_image(data, mode=ImageReadMode.RGB, apply_exif_orientation=True)
    except (OSError, RuntimeError, ValueError) as error:
        # torchvision's messages start with "function, source.cpp:line, "; keep the readable end.
        message = (str(error).splitlines() or [type(error).__name__])[0].split(".cpp:")[-1].split(", ", 1)[-1]
        raise DynatssError(f"{path}: cannot decode image ({message})") from None


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
