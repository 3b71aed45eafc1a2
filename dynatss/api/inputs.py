"""What ``Detector.predict`` accepts, turned into the one image type the model sees: ``[3, H, W]`` uint8 RGB.

Sources: an image file, a folder (its images and videos, sorted, not recursive), a glob pattern
(``"imgs/*.jpg"``), a video file (every frame), in-memory images, or a list of any of these. A
file is decoded like training data (dynatss.data.decode: EXIF orientation, the pixel limit). PIL
images and numpy arrays go through that decoder's own conversion (dynatss.data.decode.rgb_from_pil
/ rgb_from_array), so they give the pixels their file would: a PIL image in any mode (16-bit
``I;16``, ``I``, ``F``, palette, gray + alpha, CMYK, ...), a numpy ``[H, W, 3]`` (or ``[H, W]``,
``[H, W, 4]``) array of any integer depth in RGB order (OpenCV's BGR must be flipped first). A torch
``[3, H, W]`` uint8 tensor or a float one in 0..1 (torchvision's convention) is taken as it is; a
``[B, 3, H, W]`` tensor is B images. In-memory images are taken as they are stored: no EXIF
orientation is applied to them.

Images are read one at a time, as they are reached (:func:`iter_inputs`): a long video or a large
folder never sits in memory whole. An input that cannot be read becomes an :class:`InputImage`
with its ``error`` (a one-line message) instead of an image.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dynatss.api.video import import_av, is_video, read_frames
from dynatss.config import DEFAULT_MAX_IMAGE_PIXELS
from dynatss.data.decode import rgb_from_array, rgb_from_pil
from dynatss.data.transforms import load_image
from dynatss.errors import DynatssError

ImageInput = Any  # str | Path | PIL.Image.Image | np.ndarray | Tensor (PIL is imported lazily)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
GLOB_CHARACTERS = "*?["
# Channels kept from an RGBA image / array: the alpha channel carries no colour.
RGB_CHANNELS = 3


@dataclass(frozen=True)
class InputImage:
    """One image to detect on: ``image`` [3, H, W] uint8 (None when it could not be read, then
    ``error`` says why), the file it came from, and its frame index and time in a video."""

    image: Tensor | None
    source: str | None
    frame: int | None = None
    time: float | None = None
    error: str | None = None


def is_single_image(inputs: Any) -> bool:
    """One image (a file that is not a video, or an in-memory image): one Result, not a list."""
    if isinstance(inputs, (str, Path)):
        path = Path(inputs)
        return not (path.is_dir() or is_video(path) or (not path.exists() and _is_pattern(str(inputs))))
    if isinstance(inputs, Tensor):
        return inputs.dim() != 4
    return not isinstance(inputs, (list, tuple))


def _is_pattern(text: str) -> bool:
    return any(character in text for character in GLOB_CHARACTERS)


def iter_inputs(inputs: Any, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Iterator[InputImage]:
    """Every image of ``inputs``, in order, read as it is reached."""
    items = list(inputs) if isinstance(inputs, (list, tuple)) or (isinstance(inputs, Tensor) and inputs.dim() == 4) \
        else [inputs]
    for position, item in enumerate(items):
        if isinstance(item, (str, Path)):
            yield from _from_path(Path(item), max_pixels)
        else:
            yield _in_memory(item, position)


def _from_path(path: Path, max_pixels: int) -> Iterator[InputImage]:
    if path.is_dir():
        members = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES or is_video(p))
        if not members:
            yield InputImage(None, str(path), error=f"{path}: no images or videos in this folder")
        for member in members:
            yield from _from_path(member, max_pixels)
    elif not path.exists() and _is_pattern(str(path)):
        matches = sorted(Path(match) for match in glob.glob(str(path)))
        if not matches:
            yield InputImage(None, str(path), error=f"{path}: no file matches this pattern")
        for match in matches:
            yield from _from_path(match, max_pixels)
    elif is_video(path):
        import_av()  # a missing PyAV is the machine's problem, not this file's: raised, never kept
        try:
            for index, time, frame in read_frames(path):
                yield InputImage(frame, str(path), frame=index, time=time)
        except DynatssError as error:
            yield InputImage(None, str(path), error=str(error))
    elif not path.exists():
        yield InputImage(None, str(path), error=f"{path}: no such file or directory")
    else:
        try:
            yield InputImage(_checked(load_image(path, max_pixels=max_pixels), str(path)), str(path))
        except DynatssError as error:
            yield InputImage(None, str(path), error=str(error))


def _in_memory(item: ImageInput, position: int) -> InputImage:
    try:
        return InputImage(_checked(as_image(item, position), f"input {position}"), None)
    except DynatssError as error:
        return InputImage(None, None, error=str(error))


def _checked(image: Tensor, where: str) -> Tensor:
    """A 0-pixel image cannot be resized: one clear error, not a ZeroDivisionError later."""
    if image.shape[-1] == 0 or image.shape[-2] == 0:
        raise DynatssError(f"{where}: the image is empty ({image.shape[-1]}x{image.shape[-2]} pixels)")
    return image


def as_image(item: ImageInput, position: int = 0) -> Tensor:
    """One in-memory image as ``[3, H, W]`` uint8 RGB on the CPU."""
    if isinstance(item, np.ndarray):
        return rgb_from_array(item, what=f"input {position}")
    if isinstance(item, Tensor):
        return _from_tensor(item, position)
    if _is_pil(item):
        return rgb_from_pil(item, what=f"input {position}")
    raise DynatssError(
        f"input {position}: cannot read a {type(item).__name__} (expected a path, a folder, a glob, a video, "
        "a PIL image, a numpy HxWx3 array or a torch 3xHxW tensor)"
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
