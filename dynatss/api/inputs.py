"""What ``Detector.predict`` accepts, turned into the one image type the model sees: ``[3, H, W]`` uint8 RGB.

A file path is decoded like training data (dynatss.tools.images.read_image: EXIF orientation, the
pixel limit). PIL images and numpy arrays go through that decoder's own conversion
(dynatss.data.decode.rgb_from_pil / rgb_from_array), so they give the pixels their file would: a PIL
image in any mode (16-bit ``I;16``, ``I``, ``F``, palette, gray + alpha, CMYK, ...), a numpy
``[H, W, 3]`` (or ``[H, W]``, ``[H, W, 4]``) array of any integer depth in RGB order (OpenCV's BGR
must be flipped first). A torch ``[3, H, W]`` uint8 tensor or a float one in 0..1 (torchvision's
convention) is taken as it is; a ``[B, 3, H, W]`` tensor is B images. In-memory images are taken as
they are stored: no EXIF orientation is applied to them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dynatss.data.decode import rgb_from_array, rgb_from_pil
from dynatss.errors import DynatssError
from dynatss.tools.images import read_image

ImageInput = Any  # str | Path | PIL.Image.Image | np.ndarray | Tensor (PIL is imported lazily)
# Channels kept from an RGBA image / array: the alpha channel carries no colour.
RGB_CHANNELS = 3


def is_batch(inputs: Any) -> bool:
    """A list or tuple of inputs, or a ``[B, 3, H, W]`` tensor: one result per image."""
    return isinstance(inputs, (list, tuple)) or (isinstance(inputs, Tensor) and inputs.dim() == 4)


def as_images(inputs: Any) -> list[tuple[Tensor, str | None]]:
    """(image [3, H, W] uint8 on the CPU, source path or None) for every image in ``inputs``."""
    if isinstance(inputs, Tensor) and inputs.dim() == 4:
        items = list(inputs)
    elif isinstance(inputs, (list, tuple)):
        items = list(inputs)
    else:
        items = [inputs]
    return [as_image(item, position) for position, item in enumerate(items)]


def as_image(item: ImageInput, position: int = 0) -> tuple[Tensor, str | None]:
    """One input as (image [3, H, W] uint8 RGB on the CPU, source path or None)."""
    if isinstance(item, (str, Path)):
        return read_image(item), str(item)
    if isinstance(item, np.ndarray):
        return rgb_from_array(item, what=f"input {position}"), None
    if isinstance(item, Tensor):
        return _from_tensor(item, position), None
    if _is_pil(item):
        return rgb_from_pil(item, what=f"input {position}"), None
    raise DynatssError(
        f"input {position}: cannot read a {type(item).__name__} (expected a path, a PIL image, "
        "a numpy HxWx3 uint8 array or a torch 3xHxW tensor)"
    )


def _is_pil(item: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        return False
    return isinstance(item, Image.Image)


def _from_tensor(tensor: Tensor, position: int) -> Tensor:
    """torch [3, H, W] (or [1, H, W]) uint8, or float in 0..1 -> [3, H, W] uint8 on the CPU."""
    if tensor.dim() != 3 or tensor.shape[0] not in (1, RGB_CHANNELS):
        raise DynatssError(f"input {position}: tensors must be 3xHxW (RGB), got shape {tuple(tensor.shape)}")
    tensor = tensor.detach().cpu()
    if tensor.dtype.is_floating_point:
        if tensor.numel() and (tensor.min() < 0 or tensor.max() > 1):
            raise DynatssError(
                f"input {position}: float tensors are read as 0..1 (torchvision's convention), got values "
                f"in {tensor.min().item():g}..{tensor.max().item():g}; pass uint8 for 0..255"
            )
        tensor = (tensor * 255).round().to(torch.uint8)
    elif tensor.dtype != torch.uint8:
        raise DynatssError(f"input {position}: tensors must be uint8 or float, got {tensor.dtype}")
    return tensor.expand(RGB_CHANNELS, -1, -1).contiguous()
