"""Collate, aspect-ratio grouping, rank sharding, resumable train stream, test loader, bad images."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from dynatss.config import DataConfig
from dynatss.data.datasets import read_dataset
from dynatss.data.loader import (
    Sample,
    build_test_loader,
    build_train_loader,
    collate,
    train_batch_indices,
)
from dynatss.errors import DynatssError
from tests.data.helpers import write_coco

CFG = DataConfig(min_sizes=[32, 40], max_size=80, test_min_size=36, size_divisibility=32, num_workers=0)


def _sample(h, w, n_gt, n_ignore, image_id=0):
    boxes = torch.arange((n_gt + n_ignore) * 4, dtype=torch.float32).reshape(-1, 4)
    return Sample(
        image=torch.full((3, h, w), 7, dtype=torch.uint8),
        boxes=boxes,
        labels=torch.arange(n_gt + n_ignore),
        ignore=torch.tensor([False] * n_gt + [True] * n_ignore, dtype=torch.bool),
        original_size=(h * 2, w * 2),
        image_id=image_id,
    )


def test_collate_pads_images_and_boxes():
    batch = collate([_sample(30, 50, 3, 0, 1), _sample(70, 20, 1, 2, 2)], size_divisibility=32)
    assert tuple(batch.images.shape) == (2, 3, 96, 64)
    assert batch.images[0, :, :30, :50].eq(7).all() and batch.images[0, :, 30:].eq(0).all()
    assert tuple(batch.gt_boxes.shape) == (2, 3, 4) and batch.gt_valid.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch.gt_labels[1, 0].item() == 0
    assert tuple(batch.ignore_boxes.shape) == (2, 2, 4) and batch.ignore_valid.tolist() == [[0, 0], [1, 1]]
    assert batch.ignore_boxes[1, 0].tolist() == [4, 5, 6, 7]
    assert batch.image_sizes.tolist() == [[30, 50], [70, 20]]
    assert batch.original_sizes.tolist() == [[60, 100], [140, 40]]
    assert batch.image_ids.tolist() == [1, 2]


def test_collate_without_boxes_keeps_one_invalid_column():
    batch = collate([_sample(32, 32, 0, 0)], size_divisibility=128)
    assert tuple(batch.images.shape) == (1, 3, 128, 128)
    assert tuple(batch.gt_boxes.shape) == (1, 1, 4) and not batch.gt_valid.any()
    assert tuple(batch.ignore_boxes.shape) == (1, 1, 4) and not batch.ignore_valid.any()


def test_batches_group_portrait_and_landscape_images():
    groups = np.array([0, 1] * 10)
    for batch in itertools.islice(train_batch_indices(groups, batch_size=4, seed=0), 20):
        assert len({groups[i] for i, _ in batch}) == 1


def test_start_iter_skips_to_the_same_batches():
    groups = np.array([0, 0, 1, 0, 1, 1, 0])
    full = list(itertools.islice(train_batch_indices(groups, batch_size=2, seed=3, rank=1, world_size=2), 30))
    resumed = list(
        itertools.islice(
            train_batch_indices(groups, batch_size=2, seed=3, rank=1, world_size=2, start_iter=17), 13
        )
    )
    assert resumed == full[17:]
    other_seed = list(
        itertools.islice(train_batch_indices(groups, batch_size=2, seed=4, rank=1, world_size=2), 30)
    )
    assert other_seed != full


def test_ranks_take_disjoint_shards_of_each_epoch():
    groups = np.zeros(12, np.int64)
    seen = []
    for rank in range(3):
        batches = itertools.islice(
            train_batch_indices(groups, batch_size=2, seed=0, rank=rank, world_size=3), 2
        )
        seen.append({i for batch in batches for i, _ in batch})
    assert set().union(*seen) == set(range(12)) and sum(len(s) for s in seen) == 12


@pytest.fixture
def records(tmp_path):
    spec = [(f"{i}.png", (40, 30) if i % 3 else (24, 40), [(2, 3, 20, 25, i % 2, i == 4)]) for i in range(8)]
    return read_dataset("coco", write_coco(tmp_path, spec), "train").records


def test_train_loader_resumes_identically_and_ignores_worker_count(records):
    stream = build_train_loader(records, CFG, batch_size=2, seed=5)
    full = [next(stream) for _ in range(6)]
    cfg_workers = DataConfig(**{**vars(CFG), "num_workers": 1})
    resumed = build_train_loader(records, cfg_workers, batch_size=2, seed=5, start_iter=4)
    for expected in full[4:]:
        got = next(resumed)
        for name in ("images", "gt_boxes", "gt_labels", "ignore_boxes", "image_ids", "image_sizes"):
            assert torch.equal(getattr(got, name), getattr(expected, name)), name
    assert all(b.images.shape[-1] % 32 == 0 and b.images.shape[-2] % 32 == 0 for b in full)
    assert all((b.image_sizes[:, 0] > b.image_sizes[:, 1]).unique().numel() == 1 for b in full)


def test_test_loader_covers_each_record_once_over_ranks(records):
    ids = []
    for rank in range(3):
        loader = build_test_loader(records, CFG, batch_size=2, rank=rank, world_size=3)
        batches = list(loader)
        assert len(batches) == len(loader)
        ids += [i for b in batches for i in b.image_ids.tolist()]
        assert ids[-1] == list(loader)[-1].image_ids[-1].item()  # deterministic order
    assert sorted(ids) == sorted(r.image_id for r in records)
    batch = next(iter(build_test_loader(records[:1], CFG, batch_size=1)))
    scale = 36 / min(records[0].width, records[0].height)
    assert batch.gt_boxes[0, 0].tolist() == pytest.approx(
        [2 * scale, 3 * scale, 20 * scale, 25 * scale], abs=1e-4
    )


@pytest.mark.parametrize("workers", [0, 1])
def test_image_unreadable_mid_training_is_replaced_with_one_warning(records, workers):
    records[3].path.write_bytes(b"broken")
    cfg = DataConfig(**{**vars(CFG), "num_workers": workers})
    warnings: list[str] = []
    stream = build_train_loader(records, cfg, batch_size=2, seed=0, warn=warnings.append)
    batches = [next(stream) for _ in range(12)]  # three epochs: the bad image is drawn three times
    assert all(len(batch) == 2 for batch in batches)
    assert records[3].image_id not in {i for batch in batches for i in batch.image_ids.tolist()}
    assert len(warnings) == 1 and str(records[3].path) in warnings[0] and "replaced" in warnings[0]
    assert "\n" not in warnings[0]


def test_training_stops_in_one_line_when_no_image_can_be_read(records):
    for record in records:
        record.path.write_bytes(b"broken")
    stream = build_train_loader(records, CFG, batch_size=2, seed=0, warn=lambda message: None)
    with pytest.raises(DynatssError) as info:
        next(stream)
    assert "\n" not in str(info.value) and "failed too" in str(info.value)


def test_test_loader_leaves_out_an_unreadable_image_with_a_warning(records):
    records[1].path.write_bytes(b"broken")
    warnings: list[str] = []
    batches = list(build_test_loader(records, CFG, batch_size=2, warn=warnings.append))
    ids = [i for batch in batches for i in batch.image_ids.tolist()]
    assert ids == [r.image_id for r in records if r is not records[1]]
    assert len(warnings) == 1 and str(records[1].path) in warnings[0] and "left out" in warnings[0]
