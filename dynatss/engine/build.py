"""Turn a Config into the run's parts with plain calls: device, dataset splits, detector, criterion."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from dynatss.config import Config, DataConfig
from dynatss.config_values import DEVICE_PATTERN
from dynatss.data.datasets import DatasetRead, read_dataset
from dynatss.data.records import DatasetMeta
from dynatss.engine.distributed import barrier
from dynatss.errors import DynatssError
from dynatss.losses.criterion import DetectionCriterion, HeadTerms
from dynatss.losses.head_terms import ATSSTerms, GFLTerms, VFNetTerms
from dynatss.model.build import build_detector
from dynatss.model.detector import DetectionModel


def resolve_device(name: str, local_rank: int = 0, *, setting: str = "train.device") -> torch.device:
    """The one device rule of every command (train, eval, predict, report, the Python API).

    ``"auto"`` (the default everywhere) is CUDA when available, else the CPU; ``"cuda"`` or
    ``"gpu"`` is this process's GPU (under torchrun: its local rank); ``"cuda:N"`` is GPU N.
    Asking for a GPU on a machine without one is a one-line error naming ``setting``.
    """
    text = str(name).strip().lower()
    if not DEVICE_PATTERN.fullmatch(text):
        raise DynatssError(f"{setting} = {name!r}: must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'gpu'")
    if text == "cpu" or (text == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DynatssError(
            f"{setting} = {name!r}: no CUDA GPU is available on this machine (torch {torch.__version__}); "
            "use 'cpu' or 'auto'"
        )
    index = int(text.split(":")[1]) if ":" in text else local_rank
    if index >= torch.cuda.device_count():
        raise DynatssError(f"{setting} = {name!r}: there is no GPU {index} ({torch.cuda.device_count()} visible)")
    return torch.device("cuda", index)


def prepare_synthetic(data: DataConfig, *, is_main: bool) -> Path:
    """Generate the synthetic dataset once (rank 0), cached under ``data.root``; others wait."""
    from dynatss.data.synthetic import ensure_synthetic_dataset

    root = Path(data.root)
    if is_main:
        ensure_synthetic_dataset(
            root,
            num_train=data.synthetic_train_images,
            num_val=data.synthetic_val_images,
            image_size=data.synthetic_image_size,
            seed=data.synthetic_seed,
        )
    barrier()
    return root


def load_split(data: DataConfig, split: str, *, verify: bool = False) -> DatasetRead:
    """Read one split; the synthetic data is COCO on disk (call :func:`prepare_synthetic` first).

    ``verify`` decodes every image once (cached) to find unreadable ones before training starts.
    """
    fmt = "coco" if data.format == "synthetic" else data.format
    return read_dataset(fmt, data.root, split, verify=verify, max_pixels=data.max_image_pixels)


def with_num_classes(cfg: Config, meta: DatasetMeta) -> Config:
    """A copy of ``cfg`` whose model predicts the dataset's classes (saved with the run)."""
    cfg = copy.deepcopy(cfg)
    cfg.model.num_classes = meta.num_classes
    return cfg


def build_model(cfg: Config, device: torch.device) -> DetectionModel:
    return build_detector(cfg.model).to(device)


def build_criterion(cfg: Config, model: DetectionModel) -> DetectionCriterion:
    """The shared criterion with the terms of the configured head (``model``: unused, the outputs
    carry what the criterion needs of it; kept for the training loop's call)."""
    if cfg.model.head == "gfl":
        terms: HeadTerms = GFLTerms(cfg.loss, reg_max=cfg.model.reg_max)
    elif cfg.model.head == "vfnet":
        terms = VFNetTerms(cfg.loss)
    else:
        terms = ATSSTerms(cfg.loss, quality=cfg.model.quality)
    return DetectionCriterion(cfg.assign, terms)
