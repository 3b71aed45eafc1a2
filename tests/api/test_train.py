"""Detector.train: a config file in, the trained Detector out."""

from __future__ import annotations

from pathlib import Path

from dynatss import Detector, Result
from tests.cli.conftest import synthetic_root, tiny_config  # noqa: F401 (fixtures)


def test_train_returns_the_detector_of_the_best_checkpoint(tiny_config, tmp_path):  # noqa: F811
    run_dir = tmp_path / "api-run"
    detector = Detector.train(tiny_config, [f"train.output_dir={run_dir}", "data.num_workers=0"])
    assert detector.weights == run_dir / "checkpoints" / "best.pth"  # evaluated at the last iteration
    assert detector.config.train.output_dir == str(run_dir)
    image = sorted((Path(detector.config.data.root) / "val").glob("*.png"))[0]
    result = detector.predict(image)
    assert isinstance(result, Result) and result.source == str(image)
