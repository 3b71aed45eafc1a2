"""Data-loading throughput: dynatss's loader vs torchvision's CocoDetection pipeline on BCCD.

Both decode the same JPEGs (BCCD train converted to COCO with dynatss's writer), resize the shorter
side to 800 (longer <= 1333) and flip with p=0.5 using transforms.v2 on uint8 tensors, and batch 4
images. dynatss also pads each batch to a multiple of 128 and builds the padded GT tensors;
torchvision's reference collate is ``tuple(zip(*batch))``. Runs alternate between the two pipelines
and the best of ``--repeats`` runs is kept, to reduce noise from other processes.

    .venv/bin/python benchmarks/data.py [--images 120] [--workers 0 1 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import faster_coco_eval
import torch
from torch.utils.data import DataLoader
from torchvision.datasets import CocoDetection, wrap_dataset_for_transforms_v2
from torchvision.transforms import v2

from dynatss.config import DataConfig
from dynatss.data.coco_io import write_coco
from dynatss.data.datasets import read_dataset
from dynatss.data.loader import build_train_loader

BCCD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bccd"


def _tv_collate(batch):
    return tuple(zip(*batch))


def time_ours(records, cfg: DataConfig, batch_size: int, num_batches: int) -> float:
    """Images per second after the first batch (worker start-up excluded)."""
    stream = build_train_loader(records, cfg, batch_size=batch_size, seed=0)
    next(stream)
    start = time.perf_counter()
    for _ in range(num_batches):
        next(stream)
    return num_batches * batch_size / (time.perf_counter() - start)


def time_torchvision(root: Path, cfg: DataConfig, batch_size: int, num_batches: int, workers: int) -> float:
    transforms = v2.Compose(
        [
            v2.ToImage(),
            v2.RandomShortestSize(min_size=cfg.min_sizes, max_size=cfg.max_size),
            v2.RandomHorizontalFlip(p=cfg.hflip_prob),
        ]
    )
    # The documented v2 usage: the wrapper turns targets into tv_tensors, then applies `transforms`.
    dataset = CocoDetection(
        str(root / "train"), str(root / "annotations" / "instances_train.json"), transforms=transforms
    )
    dataset = wrap_dataset_for_transforms_v2(dataset, target_keys=("boxes", "labels", "image_id"))
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        collate_fn=_tv_collate,
        drop_last=True,
    )
    batches = iter(_forever(loader))
    next(batches)
    start = time.perf_counter()
    for _ in range(num_batches):
        next(batches)
    return num_batches * batch_size / (time.perf_counter() - start)


def _forever(loader):
    while True:
        yield from loader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=BCCD, help="BCCD (VOC layout)")
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    faster_coco_eval.init_as_pycocotools()  # CocoDetection imports pycocotools.coco.COCO

    read = read_dataset("voc", args.data, "train")
    records = read.records[: args.images]
    num_batches = len(records) // args.batch_size
    with tempfile.TemporaryDirectory() as tmp:
        write_coco(records, read.meta, Path(tmp), "train")
        coco = read_dataset("coco", tmp, "train").records  # ours reads the same converted files
        print(f"BCCD train, {len(records)} images (640x480 JPEG), batch {args.batch_size}, shorter side 800")
        print(f"{'workers':>7} | {'dynatss img/s':>13} | {'torchvision img/s':>17} | {'ratio':>5}")
        print(f"{'-' * 7}-+-{'-' * 13}-+-{'-' * 17}-+-{'-' * 5}")
        for workers in args.workers:
            cfg = DataConfig(num_workers=workers)
            ours, theirs = [], []
            for _ in range(args.repeats):
                ours.append(time_ours(coco, cfg, args.batch_size, num_batches))
                theirs.append(time_torchvision(Path(tmp), cfg, args.batch_size, num_batches, workers))
            print(
                f"{workers:>7} | {max(ours):>13.1f} | {max(theirs):>17.1f} | {max(ours) / max(theirs):>5.2f}"
            )


if __name__ == "__main__":
    main()
