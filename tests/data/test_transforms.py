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


def test_random_crop_shifts_clips_and_ignores_boxes_mostly_outside():
    """data.crop_size: boxes follow the window; those less than half inside become ignore regions."""
    from dynatss.data.transforms import CROP_MIN_VISIBLE, random_crop

    height, width, size = 120, 200, 100
    rows = torch.arange(height).view(-1, 1).expand(height, width)
    cols = torch.arange(width).view(1, -1).expand(height, width)
    image = torch.stack((rows, cols, rows)).to(torch.uint8)  # the pixel says where it was
    boxes = torch.tensor([[10.0, 10.0, 30.0, 30.0], [0.0, 0.0, 200.0, 120.0], [150.0, 50.0, 199.0, 119.0],
                          [90.0, 90.0, 110.0, 118.0]])
    ignore = torch.tensor([False, False, False, True])
    seen_partial = seen_dropped = False
    for seed in range(30):
        torch.manual_seed(seed)
        crop, kept_boxes, kept, kept_ignore = random_crop(image, boxes, ignore, size)
        assert crop.shape == (3, 100, 100)
        top, left = int(crop[0, 0, 0]), int(crop[1, 0, 0])
        expected_boxes, expected_ignore, expected_kept = [], [], []
        for box, flag in zip(boxes.tolist(), ignore.tolist()):
            x0, y0, x1, y1 = box[0] - left, box[1] - top, box[2] - left, box[3] - top
            cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, size), min(y1, size)
            visible = max(cx1 - cx0, 0) * max(cy1 - cy0, 0)
            expected_kept.append(visible > 0)
            if visible > 0:
                expected_boxes.append([cx0, cy0, cx1, cy1])
                partial = visible < CROP_MIN_VISIBLE * (x1 - x0) * (y1 - y0)
                expected_ignore.append(flag or partial)
                seen_partial |= partial
        seen_dropped |= not all(expected_kept)
        assert kept.tolist() == expected_kept
        torch.testing.assert_close(kept_boxes, torch.tensor(expected_boxes).reshape(-1, 4))
        assert kept_ignore.tolist() == expected_ignore
    assert seen_partial and seen_dropped  # both cases really happened


def test_random_crop_keeps_a_side_shorter_than_the_window():
    from dynatss.data.transforms import random_crop

    image = torch.zeros(3, 50, 300, dtype=torch.uint8)
    crop, boxes, kept, _ = random_crop(image, torch.tensor([[0.0, 0.0, 300.0, 50.0]]), torch.tensor([False]), 100)
    assert crop.shape == (3, 50, 100) and kept.tolist() == [True] and boxes[0, [1, 3]].tolist() == [0.0, 50.0]
