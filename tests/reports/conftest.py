"""A tiny random-init detector checkpoint, synthetic images and fake run directories for tool tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from dynatss.config import Config, DataConfig, InferenceConfig, ModelConfig, config_to_dict
from dynatss.data.records import DatasetMeta

CLASS_NAMES = ("rectangle", "ellipse", "triangle", "cross")
CATEGORY_IDS = (1, 2, 3, 7)  # not 0-based on purpose: JSON must map labels to dataset ids


@dataclass(frozen=True)
class TinyRun:
    run_dir: Path
    checkpoint: Path
    config: Config
    meta: DatasetMeta


def tiny_config(data_root: Path) -> Config:
    """resnet18 with a 1-conv 64-channel head at 128 px: CPU-fast, random weights."""
    return Config(
        model=ModelConfig(backbone="resnet18", pretrained=None, fpn_channels=32, head_channels=64,
                          head_convs=1, num_classes=len(CLASS_NAMES)),
        # Threshold 0 and a few detections: a random-init model still yields boxes to compare/draw.
        inference=InferenceConfig(score_threshold=0.0, pre_nms_topk=50, max_detections=5),
        data=DataConfig(format="synthetic", root=str(data_root), train_split="train", val_split="val",
                        test_min_size=128, max_size=256, size_divisibility=32),
    )


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> TinyRun:
    """RUN_DIR/checkpoints/last.pth (the engine's save_checkpoint, random weights; no metrics.jsonl)
    and a 3-image synthetic validation split at the config's data.root."""
    from dynatss.data.synthetic import ensure_synthetic_dataset
    from dynatss.engine.checkpoint import meta_to_dict, save_checkpoint
    from dynatss.model.build import build_detector

    base = tmp_path_factory.mktemp("tiny")
    data_root = ensure_synthetic_dataset(base / "data", num_train=1, num_val=3, image_size=96, seed=0)
    config = tiny_config(data_root)
    meta = DatasetMeta(CLASS_NAMES, CATEGORY_IDS)
    torch.manual_seed(0)
    model = build_detector(config.model)
    run_dir = base / "run"
    checkpoint = save_checkpoint(
        {"model": model.state_dict(), "iter": 0, "config": config_to_dict(config), "meta": meta_to_dict(meta)},
        run_dir / "checkpoints" / "last.pth",
    )
    return TinyRun(run_dir, checkpoint, config, meta)

