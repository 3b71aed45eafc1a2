"""Synthetic shapes: deterministic per seed, cached by parameters, exact boxes, knobs respected."""

from __future__ import annotations

import numpy as np
import pytest

from dynatss.data.datasets import read_dataset
from dynatss.data.synthetic import PARAMS_FILE, SHAPES, _draw_shape, ensure_synthetic_dataset
from dynatss.errors import DynatssError

SMALL = {"num_train": 3, "num_val": 2, "image_size": 64}


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = _files(ensure_synthetic_dataset(tmp_path / "a", seed=1, **SMALL))
    b = _files(ensure_synthetic_dataset(tmp_path / "b", seed=1, **SMALL))
    c = _files(ensure_synthetic_dataset(tmp_path / "c", seed=2, **SMALL))
    assert a == b
    assert a.keys() == c.keys() and a != c
    assert "annotations/instances_train.json" in a and "val/000001.png" in a


def test_cache_reused_and_regenerated_when_parameters_change(tmp_path):
    root = ensure_synthetic_dataset(tmp_path, seed=0, **SMALL)
    stamp = (root / "train" / "000000.png").stat().st_mtime_ns
    ensure_synthetic_dataset(tmp_path, seed=0, **SMALL)
    assert (root / "train" / "000000.png").stat().st_mtime_ns == stamp
    ensure_synthetic_dataset(tmp_path, seed=0, **{**SMALL, "num_train": 4})
    assert len(read_dataset("coco", root, "train").records) == 4
    (root / "train" / "000002.png").unlink()
    ensure_synthetic_dataset(tmp_path, seed=0, **{**SMALL, "num_train": 4})
    assert (root / "train" / "000002.png").exists()


def test_refuses_to_overwrite_a_foreign_dataset(tmp_path):
    ensure_synthetic_dataset(tmp_path, seed=0, **SMALL)
    (tmp_path / PARAMS_FILE).unlink()
    with pytest.raises(DynatssError, match="not dynatss synthetic data"):
        ensure_synthetic_dataset(tmp_path, seed=0, **SMALL)


def test_records_respect_the_knobs(tmp_path):
    root = ensure_synthetic_dataset(
        tmp_path,
        num_train=6,
        num_val=1,
        image_size=96,
        seed=0,
        num_classes=3,
        objects_per_image=(2, 2),
        size_range=(10, 20),
        tiny_fraction=0.0,
        extreme_aspect_fraction=0.0,
        crowd_fraction=0.0,
    )
    read = read_dataset("coco", root, "train", verify=True)
    assert read.problems == [] and read.meta.class_names == SHAPES[:3]
    for record in read.records:
        assert (record.width, record.height) == (96, 96)
        assert (
            len(record.labels) == 2 and set(record.labels.tolist()) <= {0, 1, 2} and not record.ignore.any()
        )
        sides = np.sqrt((record.boxes[:, 2] - record.boxes[:, 0]) * (record.boxes[:, 3] - record.boxes[:, 1]))
        assert (sides >= 5).all() and (sides <= 21).all()


def test_default_set_has_crowds_and_tiny_objects(tmp_path):
    root = ensure_synthetic_dataset(tmp_path, num_train=40, num_val=1, image_size=128, seed=0)
    records = read_dataset("coco", root, "train").records
    boxes = np.concatenate([r.boxes for r in records])
    sides = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    assert any(r.ignore.any() for r in records)  # crowd regions
    assert (sides < 8).any() and (sides > 40).any()


@pytest.mark.parametrize("label", range(len(SHAPES)))
def test_boxes_are_tight_around_drawn_pixels(label):
    image = np.zeros((50, 60, 3), np.float32)
    box = _draw_shape(np.random.default_rng(0), image, label, 7, 9, 31, 23)
    ys, xs = np.nonzero(image.any(axis=2))
    assert box == (xs.min(), ys.min(), xs.max() + 1.0, ys.max() + 1.0)
