"""A tiny CPU training set-up shared by the engine tests: 96 px synthetic shapes, small MobileNetV2."""

from __future__ import annotations

from pathlib import Path

from dynatss.data.synthetic import ensure_synthetic_dataset

NUM_TRAIN = 16
NUM_VAL = 4
IMAGE_SIZE = 96


def make_synthetic(root: Path) -> Path:
    return ensure_synthetic_dataset(root, num_train=NUM_TRAIN, num_val=NUM_VAL, image_size=IMAGE_SIZE, seed=0)


def tiny_overrides(data_root: Path, output_dir: Path, *, max_iter: int = 6, batch_size: int = 4) -> list[str]:
    """Dotted overrides turning the default config into a run of a few seconds on one CPU core."""
    return [
        "model.backbone=mobilenet_v2",
        "model.pretrained=null",
        "model.fpn_channels=32",
        "model.head_channels=64",
        "model.head_convs=1",
        "model.max_level=5",
        "model.anchor_scales=[4.0]",
        "data.format=synthetic",
        f"data.root={data_root}",
        f"data.synthetic_train_images={NUM_TRAIN}",
        f"data.synthetic_val_images={NUM_VAL}",
        f"data.synthetic_image_size={IMAGE_SIZE}",
        "data.train_split=train",
        "data.val_split=val",
        f"data.min_sizes=[{IMAGE_SIZE}]",
        f"data.max_size={IMAGE_SIZE}",
        f"data.test_min_size={IMAGE_SIZE}",
        "data.size_divisibility=32",
        "data.num_workers=0",
        f"solver.max_iter={max_iter}",
        f"solver.batch_size={batch_size}",
        "solver.base_lr=0.01",
        "solver.steps=[4]",
        "solver.warmup_iters=2",
        "train.device=cpu",
        f"train.output_dir={output_dir}",
        "train.log_period=1",
        "train.eval_period=0",
        f"train.checkpoint_period={max_iter}",
        "train.keep_last=2",
    ]
