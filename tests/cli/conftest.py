from __future__ import annotations

from pathlib import Path

import pytest

from dynatss.data.synthetic import ensure_synthetic_dataset

NUM_TRAIN, NUM_VAL, IMAGE_SIZE = 16, 4, 96


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_synthetic_dataset(
        tmp_path_factory.mktemp("synthetic"), num_train=NUM_TRAIN, num_val=NUM_VAL, image_size=IMAGE_SIZE, seed=0
    )


@pytest.fixture
def tiny_config(tmp_path: Path, synthetic_root: Path) -> Path:
    """A YAML config for a 3-iteration CPU run on the tiny synthetic set (run dir: tmp_path/run)."""
    path = tmp_path / "tiny.yaml"
    path.write_text(
        f"""
model: {{backbone: mobilenet_v2, pretrained: null, fpn_channels: 32, head_channels: 64, head_convs: 1,
        max_level: 5, anchor_scales: [4.0]}}
data: {{format: synthetic, root: '{synthetic_root}', synthetic_train_images: {NUM_TRAIN},
       synthetic_val_images: {NUM_VAL}, synthetic_image_size: {IMAGE_SIZE}, train_split: train,
       val_split: val, min_sizes: [{IMAGE_SIZE}], max_size: {IMAGE_SIZE}, test_min_size: {IMAGE_SIZE},
       size_divisibility: 32, num_workers: 0}}
solver: {{max_iter: 3, batch_size: 4, base_lr: 0.01, steps: [2], warmup_iters: 1}}
train: {{device: cpu, output_dir: '{tmp_path / "run"}', log_period: 1, eval_period: 3, checkpoint_period: 3}}
"""
    )
    return path


from tests.reports.conftest import tiny_run  # noqa: E402, F401 (a fixture, shared with the reports and API tests)
