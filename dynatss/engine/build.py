"""Turn a Config into the run's parts with plain calls: device, dataset splits, detector, criterion."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from dynatss.config import Config, DataConfig
from dynatss.data.datasets import DatasetRead, read_dataset
from dynatss.data.records import DatasetMeta
from dynatss.engine.distributed import barrier
from dynatss.errors import DynatssError
from dynatss.model.build import build_detector
from dynatss.model.detector import DetectionModel


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` is CUDA when available, else the CPU; under torchrun each process takes its GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise DynatssError("train.device is 'cuda' but no CUDA device is available")
        return torch.device("cuda", local_rank)
    if name != "cpu":
        raise DynatssError(f"train.device must be 'auto', 'cpu' or 'cuda', got {name!r}")
    return torch.device("cpu")


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


def load_split(data: DataConfig, split: str) -> DatasetRead:
    """Read one split; the synthetic data is COCO on disk (call :func:`prepare_synthetic` first)."""
    if data.format == "synthetic":
        return read_dataset("coco", data.root, split)
    return read_dataset(data.format, data.root, split)


def with_num_classes(cfg: Config, meta: DatasetMeta) -> Config:
    """A copy of ``cfg`` whose model predicts the dataset's classes (saved with the run)."""
    cfg = copy.deepcopy(cfg)
    cfg.model.num_classes = meta.num_classes
    return cfg


def build_model(cfg: Config, device: torch.device) -> DetectionModel:
    return build_detector(cfg.model).to(device)


def build_criterion(cfg: Config, model: DetectionModel) -> torch.nn.Module:
    from dynatss.losses.criterion import DetectionCriterion
    from dynatss.losses.gfl_criterion import GFLCriterion
    from dynatss.losses.vfnet_criterion import VFNetCriterion

    if cfg.model.head == "gfl":
        return GFLCriterion(cfg.assign, cfg.loss, num_classes=cfg.model.num_classes, reg_max=cfg.model.reg_max)
    if cfg.model.head == "vfnet":
        return VFNetCriterion(cfg.assign, cfg.loss, num_classes=cfg.model.num_classes)
    return DetectionCriterion(
        cfg.assign,
        cfg.loss,
        num_classes=cfg.model.num_classes,
        box_coder=model.box_coder,
        quality=cfg.model.quality,
    )
