"""Issue 18's items in the commands and API rebuilt by issue 19: `assign` finds its image by path,
`eval` writes beside the checkpoint's run and evaluates ONNX files, `Detector.predict` keeps the good
images' results beside a bad one, and an empty image is one clear error. Each fails at 4db224f."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.io import write_png

from dynatss import Detector
from dynatss.cli.main import main
from dynatss.data.datasets import read_dataset
from dynatss.errors import DynatssError
from tests.robust.conftest import one_line_error

# The tiny run's synthetic data as it was generated (else eval would generate it again, full size).
SAME_DATA = ["data.synthetic_train_images=1", "data.synthetic_val_images=3", "data.synthetic_image_size=96",
             "data.num_workers=0"]


def _record(root: Path, split: str, name: str):
    return next(r for r in read_dataset("coco", root, split).records if Path(r.path).name == name)


def test_assign_takes_the_ground_truth_of_the_image_it_is_given(tiny_run, tmp_path, capsys):
    """train/000000.png and val/000000.png are different images: val's must get val's boxes."""
    root = Path(tiny_run.config.data.root)
    image = root / "val" / "000000.png"
    train, val = _record(root, "train", image.name), _record(root, "val", image.name)
    assert not np.array_equal(train.boxes, val.boxes)
    assert main(["assign", str(image), "--weights", str(tiny_run.checkpoint), "--out", str(tmp_path)]) == 0
    document = json.loads((tmp_path / f"assign_{image.stem}.json").read_text())
    np.testing.assert_allclose([gt["box_original"] for gt in document["gts"]], val.boxes[~val.ignore], atol=0.01)
    capsys.readouterr()

    elsewhere = tmp_path / "copy" / image.name  # a bare name found in both splits: ambiguous
    elsewhere.parent.mkdir()
    shutil.copy(image, elsewhere)
    assert main(["assign", str(elsewhere), "--weights", str(tiny_run.checkpoint), "--out", str(tmp_path)]) == 2
    error = one_line_error(capsys.readouterr().err, "several splits", "--split")
    assert "train" in error and "val" in error
    assert main(["assign", str(elsewhere), "--weights", str(tiny_run.checkpoint), "--split", "val",
                 "--out", str(tmp_path)]) == 0


def test_eval_writes_beside_the_checkpoints_run_whatever_the_current_folder(tiny_run, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(tiny_run.run_dir, run)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["eval", "--weights", str(run / "checkpoints" / "last.pth"), *SAME_DATA]) == 0
    assert (run / "eval" / "detections_val.json").is_file()
    assert not list(elsewhere.iterdir())


def test_eval_evaluates_an_exported_onnx_file_like_its_checkpoint(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run.run_dir, run)
    weights = run / "checkpoints" / "last.pth"
    (run / "config.yaml").write_text(json.dumps({"data": {**json.loads(json.dumps(_data(tiny_run))),
                                                          "num_workers": 0}}))
    assert main(["export", "--weights", str(weights), "--out", str(run / "checkpoints" / "last.onnx")]) == 0
    assert main(["eval", "--weights", str(weights), "--out", str(tmp_path / "pth"), *SAME_DATA]) == 0
    assert main(["eval", "--weights", str(run / "checkpoints" / "last.onnx"), "--out", str(tmp_path / "onnx")]) == 0
    capsys.readouterr()
    pth = json.loads((tmp_path / "pth" / "detections_val.json").read_text())
    onnx = json.loads((tmp_path / "onnx" / "detections_val.json").read_text())
    assert len(onnx) == len(pth) > 0
    for a, b in zip(pth, onnx):
        assert (a["image_id"], a["category_id"]) == (b["image_id"], b["category_id"])
        np.testing.assert_allclose(a["bbox"], b["bbox"], atol=0.02)
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)


def _data(tiny_run) -> dict:
    data = tiny_run.config.data
    return {"format": data.format, "root": data.root, "train_split": data.train_split, "val_split": data.val_split,
            "synthetic_train_images": 1, "synthetic_val_images": 3, "synthetic_image_size": 96}


def test_predict_keeps_the_good_images_results_beside_a_bad_one(tiny_run, tmp_path):
    detector = Detector.from_checkpoint(tiny_run.checkpoint, device="cpu", score_threshold=0.0)
    good = tmp_path / "good.png"
    write_png(torch.randint(0, 256, (3, 64, 80), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)),
              str(good))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DynatssError, match="bad.jpg"):  # by default the first bad input stops, named
        detector.predict([good, bad])
    kept = detector.predict([good, bad, good], errors="keep")
    assert [r.ok for r in kept] == [True, False, True] and "bad.jpg" in kept[1].error
    assert len(kept[0]) > 0 and torch.equal(kept[0].boxes, detector.predict(good).boxes)
    assert len(kept[1]) == 0 and kept[1].to_dict()["error"] == kept[1].error


@pytest.mark.parametrize("empty", [np.zeros((0, 0, 3), np.uint8), np.zeros((0, 5, 3), np.uint8),
                                   torch.zeros(3, 7, 0, dtype=torch.uint8)])
def test_an_empty_image_is_one_clear_error(tiny_run, empty):
    detector = Detector.from_checkpoint(tiny_run.checkpoint, device="cpu")
    with pytest.raises(DynatssError, match="empty") as caught:
        detector.predict(empty)
    assert "\n" not in str(caught.value)
