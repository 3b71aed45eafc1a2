"""Transforms keep boxes on their pixels; decoding respects EXIF orientation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dynatss.config import DataConfig
from dynatss.data.datasets import read_dataset
from dynatss.data.transforms import build_transforms, load_image, transform_sample
from tests.data.helpers import write_coco


def _drawn_box(image: torch.Tensor) -> list[float]:
    """Continuous xyxy box around the pixels brighter than mid-grey."""
    ys, xs = torch.nonzero(image[0] > 127, as_tuple=True)
    return [xs.min().item(), ys.min().item(), xs.max().item() + 1.0, ys.max().item() + 1.0]


@pytest.mark.parametrize(("min_size", "flip"), [(80, 1.0), (57, 1.0), (23, 0.0)])
def test_resize_and_flip_keep_box_on_drawn_pixels(min_size, flip):
    image = torch.zeros((3, 40, 60), dtype=torch.uint8)  # [3, H, W]
    image[:, 5:20, 10:31] = 255  # pixels x 10..30, y 5..19 -> box [10, 5, 31, 20]
    cfg = DataConfig(min_sizes=[min_size], max_size=1000, hflip_prob=flip)
    out_image, out_boxes = transform_sample(
        build_transforms(cfg, train=True), image, torch.tensor([[10.0, 5.0, 31.0, 20.0]])
    )
    assert out_image.dtype == torch.uint8 and out_image.shape[-2] == min_size
    assert abs(out_image.shape[-1] - 60 * min_size / 40) <= 1
    expected = _drawn_box(out_image)
    assert np.abs(np.array(out_boxes[0].tolist()) - expected).max() <= 1.5
    # Flipped: the box is on the right-hand side of the resized image.
    centre = (out_boxes[0, 0] + out_boxes[0, 2]) / 2 / out_image.shape[-1]
    assert (centre > 0.5) == bool(flip)


def test_longer_side_is_capped_by_max_size():
    image = torch.zeros((3, 20, 100), dtype=torch.uint8)
    cfg = DataConfig(min_sizes=[50], max_size=150, hflip_prob=0.0)
    out_image, _ = transform_sample(build_transforms(cfg, train=True), image, torch.zeros((0, 4)))
    assert tuple(out_image.shape[-2:]) == (30, 150)


def test_test_transform_uses_test_min_size_without_flip():
    image = torch.zeros((3, 40, 60), dtype=torch.uint8)
    cfg = DataConfig(min_sizes=[10], test_min_size=80, max_size=1000, hflip_prob=1.0)
    out_image, boxes = transform_sample(
        build_transforms(cfg, train=False), image, torch.tensor([[0.0, 0, 6, 4]])
    )
    assert tuple(out_image.shape[-2:]) == (80, 120)
    assert boxes[0].tolist() == pytest.approx([0, 0, 12, 8])


def test_exif_orientation_is_applied_to_size_and_pixels(tmp_path):
    write_coco(tmp_path, [("a.png", (40, 30), [])])
    pixels = np.zeros((30, 40, 3), np.uint8)
    pixels[:, :20] = 255  # left half white
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    path = tmp_path / "train" / "a.jpg"
    image.save(path, exif=exif, quality=95)
    record_path = tmp_path / "annotations" / "instances_train.json"
    record_path.write_text(
        record_path.read_text().replace(
            '"a.png", "width": 40, "height": 30', '"a.jpg", "width": 30, "height": 40'
        )
    )
    read = read_dataset("coco", tmp_path, "train")
    record = next(r for r in read.records if r.path.name == "a.jpg")
    assert (record.width, record.height) == (30, 40) and read.problems == []
    decoded = load_image(record.path)
    assert tuple(decoded.shape) == (3, 40, 30)
    # Rotated clockwise, the white left half is now the top half.
    assert decoded[:, :18].float().mean() > 200 and decoded[:, 22:].float().mean() < 50
