"""Image files in and out: find, decode, resize for the test-time scale, draw detections, encode.

Decoding and resizing are the data pipeline's own (dynatss.data.transforms), so a picture is seen
exactly as at evaluation; drawing is torchvision's ``draw_bounding_boxes``.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor
from torchvision import tv_tensors
from torchvision.io import encode_jpeg, encode_png
from torchvision.utils import draw_bounding_boxes

from dynatss.config import DEFAULT_MAX_IMAGE_PIXELS, DataConfig
from dynatss.data.transforms import build_transforms, load_image
from dynatss.errors import DynatssError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
JPEG_QUALITY = 95
# A fixed palette (matplotlib's tab10) so each class keeps its colour across images.
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
            "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


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


def class_color(label: int) -> str:
    return _PALETTE[label % len(_PALETTE)]


def draw_detections(
    image: Tensor, boxes: Tensor, labels: Tensor, scores: Tensor, class_names: tuple[str, ...] | list[str]
) -> Tensor:
    """Draw ``[N, 4]`` xyxy boxes on ``[3, H, W]`` uint8 with "name score" captions."""
    if boxes.numel() == 0:
        return image.clone()
    captions = [f"{class_names[int(c)]} {float(s):.2f}" for c, s in zip(labels, scores)]
    colors = [class_color(int(c)) for c in labels]
    line_width = max(1, round(max(image.shape[-2:]) / 400))  # visible on large images too
    return draw_bounding_boxes(image, boxes.float(), labels=captions, colors=colors, width=line_width)


def encode_image(image: Tensor, suffix: str) -> bytes:
    """Encode ``[3, H, W]`` uint8 as JPEG for .jpg/.jpeg, else PNG."""
    if suffix.lower() in (".jpg", ".jpeg"):
        return encode_jpeg(image, quality=JPEG_QUALITY).numpy().tobytes()
    return encode_png(image).numpy().tobytes()

