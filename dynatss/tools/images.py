"""Image files in and out: find, decode, resize for the test-time scale, draw detections, encode.

Decoding and resizing are the data pipeline's own (dynatss.data.transforms), so a picture is seen
exactly as at evaluation; drawing is :mod:`dynatss.tools.drawing` (re-exported here).
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor
from torchvision import tv_tensors
from torchvision.io import encode_jpeg, encode_png

from dynatss.config import DEFAULT_MAX_IMAGE_PIXELS, DataConfig
from dynatss.data.transforms import build_transforms, load_image
from dynatss.errors import DynatssError
from dynatss.tools.drawing import class_color as class_color  # re-exported: the drawing lives there
from dynatss.tools.drawing import draw_detections as draw_detections

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
JPEG_QUALITY = 95


def list_images(inputs: list[str | Path]) -> list[Path]:
    """Expand files and directories (their jpg/png files, sorted, not recursive) into file paths."""
    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            paths.extend(sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        elif item.exists():
            paths.append(item)
        else:
            raise DynatssError(f"{item}: no such file or directory")
    return paths


def read_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Tensor:
    """Decode to ``[3, H, W]`` uint8 RGB exactly as training and evaluation do (EXIF orientation
    applied, any bit depth); a corrupt or oversized file raises a one-line DynatssError naming it."""
    return load_image(Path(path), max_pixels=max_pixels)


def resize_for_test(image: Tensor, data_cfg: DataConfig) -> Tensor:
    """The evaluation resize: shorter side ``test_min_size``, longer at most ``max_size``."""
    resized = build_transforms(data_cfg, train=False)(tv_tensors.Image(image))
    return resized.as_subclass(Tensor)


def pad_batch(images: list[Tensor], *, size_divisibility: int) -> Tensor:
    """Stack ``[3, h_i, w_i]`` images into ``[B, 3, H, W]``, zero-padded at the bottom/right."""
    height = max(image.shape[-2] for image in images)
    width = max(image.shape[-1] for image in images)
    if size_divisibility > 1:
        height = -(-height // size_divisibility) * size_divisibility
        width = -(-width // size_divisibility) * size_divisibility
    batch = images[0].new_zeros((len(images), 3, height, width))  # [B, 3, H, W]
    for index, image in enumerate(images):
        batch[index, :, : image.shape[-2], : image.shape[-1]] = image
    return batch


def encode_image(image: Tensor, suffix: str) -> bytes:
    """Encode ``[3, H, W]`` uint8 as JPEG for .jpg/.jpeg, else PNG."""
    if suffix.lower() in (".jpg", ".jpeg"):
        return encode_jpeg(image, quality=JPEG_QUALITY).numpy().tobytes()
    return encode_png(image).numpy().tobytes()

