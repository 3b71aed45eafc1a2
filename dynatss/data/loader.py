"""From records to batches: the dataset, the collate, the samplers and the two loader builders.

``build_train_loader`` is an *infinite* iterator of :class:`Batch`, deterministic for (seed, rank)
whatever the number of workers: epoch ``e`` shuffles with a generator seeded by (seed, e), each rank
takes its own shard, images are grouped by aspect ratio (portrait vs landscape, as torchvision's
GroupedBatchSampler) so batches waste little padding, and every image's random transform is seeded by
(seed, epoch, index). ``start_iter`` skips whole batches of indices without decoding an image, so a
resumed run sees exactly the batches an uninterrupted run would have seen.

An image that cannot be decoded any more (deleted or damaged after the start-up scan) never stops a
run: in training the next readable image of the dataset takes its place (batches keep their size,
so DDP ranks stay in step); in evaluation it is left out. Either way one named warning is printed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2
from tqdm import tqdm

from dynatss.config import DEFAULT_MAX_IMAGE_PIXELS, DataConfig
from dynatss.data.batch import Batch, pad_images
from dynatss.data.records import ImageRecord
from dynatss.data.transforms import build_transforms, load_image, random_crop, transform_sample
from dynatss.errors import DynatssError

_SEED_MIX = 1_000_003  # primes mixing (seed, epoch, index) into one per-image transform seed
_EPOCH_MIX = 1_000_000_007
# A training item tries this many images (itself, then the next ones) before giving up: a dataset
# where so many images in a row fail is gone, not damaged.
_MAX_REPLACEMENTS = 16


@dataclass
class Sample:
    """One transformed image: image uint8 [3, H, W]; boxes [N, 4] resized pixels; labels [N]; ignore [N]."""

    image: Tensor
    boxes: Tensor
    labels: Tensor
    ignore: Tensor
    original_size: tuple[int, int]
    image_id: int
    skipped: tuple[str, ...] = ()  # images that failed to decode and were replaced by this one


@dataclass
class LoadFailure:
    """Returned instead of a sample when an image cannot be decoded (one line naming the file).

    ``fatal``: no replacement could be found either; the loader stops with this message.
    """

    message: str
    fatal: bool = False


@dataclass
class Collated:
    """What the collate hands the main process: the batch (None if every image failed) and the
    one-line messages of the images that could not be decoded."""

    batch: Batch | None
    skipped: list[str]
    fatal: str | None = None  # no readable image could be found: the loader stops with this


class DetectionDataset(Dataset):
    """Map-style dataset: item ``(index, seed)`` -> transformed :class:`Sample`.

    ``seed`` (or None for deterministic transforms) seeds the random transform of this one image, so
    results do not depend on which worker draws the image. With ``replace_unreadable`` (training),
    an image that cannot be decoded is replaced by the next readable one; otherwise (evaluation) the
    item is a :class:`LoadFailure`.
    """

    def __init__(
        self,
        records: list[ImageRecord],
        transform: v2.Transform,
        *,
        crop_size: int | None = None,
        max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
        replace_unreadable: bool = False,
    ) -> None:
        self.records = records
        self.transform = transform
        self.crop_size = crop_size
        self.max_pixels = max_pixels
        self.replace_unreadable = replace_unreadable

    def __len__(self) -> int:
        return len(self.records)

    def _decode(self, record: ImageRecord) -> Tensor:
        image = load_image(record.path, max_pixels=self.max_pixels)
        if tuple(image.shape[-2:]) != (record.height, record.width):
            raise DynatssError(
                f"{record.path}: image is now {image.shape[-1]}x{image.shape[-2]}, "
                f"was {record.width}x{record.height} when the dataset was read"
            )
        return image

    def __getitem__(self, item: tuple[int, int | None]) -> Sample | LoadFailure:
        index, seed = item
        failures: list[str] = []
        attempts = min(len(self.records), _MAX_REPLACEMENTS) if self.replace_unreadable else 1
        for offset in range(attempts):
            record = self.records[(index + offset) % len(self.records)]
            try:
                image = self._decode(record)
            except DynatssError as error:
                failures.append(str(error))
                continue
            return self._sample(record, image, seed, tuple(failures))
        if not self.replace_unreadable:
            return LoadFailure(failures[0])
        more = f"; and the next {attempts - 1} images failed too" if attempts > 1 else ""
        return LoadFailure(failures[0] + more, fatal=True)

    def _sample(self, record: ImageRecord, image: Tensor, seed: int | None, skipped: tuple[str, ...]) -> Sample:
        boxes = torch.from_numpy(record.boxes).reshape(-1, 4)
        labels, ignore = torch.from_numpy(record.labels), torch.from_numpy(record.ignore)
        if seed is None:
            image, boxes = transform_sample(self.transform, image, boxes)
        else:  # v2 transforms draw from the global CPU generator: seed it, then restore it
            state = torch.get_rng_state()
            try:
                torch.default_generator.manual_seed(seed)
                image, boxes = transform_sample(self.transform, image, boxes)
                if self.crop_size is not None:
                    image, boxes, kept, ignore = random_crop(image, boxes, ignore, self.crop_size)
                    labels = labels[kept]
            finally:
                torch.set_rng_state(state)
        return Sample(
            image=image,
            boxes=boxes.float(),
            labels=labels,
            ignore=ignore,
            original_size=(record.height, record.width),
            image_id=record.image_id,
            skipped=skipped,
        )


def collate(samples: list[Sample], size_divisibility: int) -> Batch:
    """Pad images (bottom/right) to a multiple of ``size_divisibility`` and GTs to G = max per image."""
    images = pad_images([sample.image for sample in samples], size_divisibility)  # [B, 3, H, W]
    gt_boxes, gt_labels, gt_valid = _pad_boxes([(s.boxes[~s.ignore], s.labels[~s.ignore]) for s in samples])
    ignore_boxes, _, ignore_valid = _pad_boxes([(s.boxes[s.ignore], s.labels[s.ignore]) for s in samples])
    return Batch(
        images=images,
        gt_boxes=gt_boxes,
        gt_labels=gt_labels,
        gt_valid=gt_valid,
        ignore_boxes=ignore_boxes,
        ignore_valid=ignore_valid,
        image_sizes=torch.tensor([tuple(s.image.shape[-2:]) for s in samples], dtype=torch.int64),
        original_sizes=torch.tensor([s.original_size for s in samples], dtype=torch.int64),
        image_ids=torch.tensor([s.image_id for s in samples], dtype=torch.int64),
    )


def _pad_boxes(per_image: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor, Tensor]:
    """Stack per-image boxes [N_i, 4] / labels [N_i] into [B, G, 4], [B, G], valid [B, G]; G >= 1."""
    count = max(1, max(len(labels) for _, labels in per_image))
    boxes = torch.zeros((len(per_image), count, 4), dtype=torch.float32)
    labels = torch.zeros((len(per_image), count), dtype=torch.int64)
    valid = torch.zeros((len(per_image), count), dtype=torch.bool)
    for i, (image_boxes, image_labels) in enumerate(per_image):
        n = len(image_labels)
        boxes[i, :n] = image_boxes
        labels[i, :n] = image_labels
        valid[i, :n] = True
    return boxes, labels, valid


class _Collate:
    """Picklable collate for worker processes: the batch of the decoded samples, and the failures."""

    def __init__(self, size_divisibility: int) -> None:
        self.size_divisibility = size_divisibility

    def __call__(self, items: list[Sample | LoadFailure]) -> Collated:
        fatal = [item.message for item in items if isinstance(item, LoadFailure) and item.fatal]
        if fatal:
            return Collated(batch=None, skipped=[], fatal=fatal[0])
        samples = [item for item in items if isinstance(item, Sample)]
        skipped = [item.message for item in items if isinstance(item, LoadFailure)]
        skipped += [message for sample in samples for message in sample.skipped]
        batch = collate(samples, self.size_divisibility) if samples else None
        return Collated(batch=batch, skipped=skipped)


def aspect_groups(records: list[ImageRecord]) -> np.ndarray:
    """[N] int: 1 for portrait images (height > width), 0 for landscape or square."""
    return np.array([int(r.height > r.width) for r in records], dtype=np.int64)


def train_batch_indices(
    groups: np.ndarray, *, batch_size: int, seed: int, rank: int = 0, world_size: int = 1, start_iter: int = 0
) -> Iterator[list[tuple[int, int]]]:
    """Infinite stream of batches of (record index, transform seed) for one rank.

    Epoch ``e`` permutes all images with a generator seeded by (seed, e); rank r takes positions
    r, r + world_size, ... (all ranks see the same permutation, so shards never overlap). Images
    wait in one bucket per group until ``batch_size`` of them are there; partial buckets carry into
    the next epoch. The first ``start_iter`` batches are computed and dropped (indices only).
    """
    num = len(groups)
    if num == 0:
        raise DynatssError("training set is empty: no usable images")
    produced = 0
    buckets: dict[int, list[tuple[int, int]]] = {}
    epoch = 0
    while True:
        order = np.random.default_rng([seed, epoch]).permutation(num)
        if num < world_size:
            order = np.resize(order, world_size)
        shard = order[rank::world_size][: len(order) // world_size]
        for index in shard.tolist():
            bucket = buckets.setdefault(int(groups[index]), [])
            bucket.append((index, ((seed * _SEED_MIX + epoch) * _EPOCH_MIX + index) % 2**63))
            if len(bucket) == batch_size:
                if produced >= start_iter:
                    yield bucket
                produced += 1
                buckets[int(groups[index])] = []
        epoch += 1


def _worker_init(_worker_id: int) -> None:
    torch.set_num_threads(1)  # one thread per worker; the workers are the parallelism


def warn_on_stderr(message: str) -> None:
    """Print ``warning: message`` without breaking a progress bar."""
    tqdm.write(f"warning: {message}", file=sys.stderr)


def _checked(items: Iterator[Collated], warn: Callable[[str], None], action: str) -> Iterator[Batch]:
    """Yield the batches; warn once per unreadable image; stop (one line) when a dataset is gone."""
    warned: set[str] = set()
    for item in items:
        if item.fatal is not None:
            raise DynatssError(item.fatal)
        for message in item.skipped:
            if message not in warned:
                warned.add(message)
                warn(f"{message}; {action}")
        if item.batch is not None:
            yield item.batch


def build_train_loader(
    records: list[ImageRecord],
    data_cfg: DataConfig,
    *,
    batch_size: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
    start_iter: int = 0,
    warn: Callable[[str], None] = warn_on_stderr,
) -> Iterator[Batch]:
    """Infinite iterator of training batches (``batch_size`` per process); see the module docstring."""
    groups = aspect_groups(records) if data_cfg.group_by_aspect_ratio else np.zeros(len(records), np.int64)
    batches = train_batch_indices(
        groups, batch_size=batch_size, seed=seed, rank=rank, world_size=world_size, start_iter=start_iter
    )
    dataset = DetectionDataset(
        records, build_transforms(data_cfg, train=True), crop_size=data_cfg.crop_size,
        max_pixels=data_cfg.max_image_pixels, replace_unreadable=True,
    )
    loader = DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=data_cfg.num_workers,
        collate_fn=_Collate(data_cfg.size_divisibility),
        pin_memory=pin_memory,
        worker_init_fn=_worker_init if data_cfg.num_workers > 0 else None,
    )
    return _checked(iter(loader), warn, "replaced by the next readable image")


class TestLoader:
    """Finite, re-iterable test loader: deterministic order, each record once over all ranks.

    Images that cannot be decoded are left out (a warning each); the evaluation scores only the
    images that were seen (see engine/evaluate.py).
    """

    def __init__(self, loader: DataLoader, warn: Callable[[str], None] = warn_on_stderr) -> None:
        self.loader = loader
        self.warn = warn

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        return _checked(iter(self.loader), self.warn, "left out of the evaluation")


def build_test_loader(
    records: list[ImageRecord],
    data_cfg: DataConfig,
    *,
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    warn: Callable[[str], None] = warn_on_stderr,
) -> TestLoader:
    """Rank r gets records r, r + world_size, ... in order (no padding duplicates), no flip."""
    indices = list(range(rank, len(records), world_size))
    batches = [
        [(i, None) for i in indices[start : start + batch_size]]
        for start in range(0, len(indices), batch_size)
    ]
    loader = DataLoader(
        DetectionDataset(records, build_transforms(data_cfg, train=False), max_pixels=data_cfg.max_image_pixels),
        batch_sampler=batches,
        num_workers=data_cfg.num_workers,
        collate_fn=_Collate(data_cfg.size_divisibility),
        worker_init_fn=_worker_init if data_cfg.num_workers > 0 else None,
    )
    return TestLoader(loader, warn)
