"""`dynatss predict`: drawn images + detections.json; a corrupt file is one warning, not a crash."""

from __future__ import annotations

import json

import pytest
import torch
from torchvision.io import decode_image, write_jpeg, write_png

from dynatss.cli.main import main
from dynatss.model.inference import detect_images
from dynatss.reports.predictions import DETECTIONS_FILE


@pytest.fixture
def image_dir(tmp_path):
    """Two good images of different shapes and one file that is not an image."""
    folder = tmp_path / "images"
    folder.mkdir()
    generator = torch.Generator().manual_seed(0)
    write_png(torch.randint(0, 256, (3, 100, 150), dtype=torch.uint8, generator=generator), str(folder / "wide.png"))
    write_jpeg(torch.randint(0, 256, (3, 140, 90), dtype=torch.uint8, generator=generator), str(folder / "tall.jpg"))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    return folder


def test_predict_cli_skips_corrupt_image_and_reports_the_rest(tiny_run, image_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["predict", "--weights", str(tiny_run.checkpoint), str(image_dir), "--out", str(out),
                 "--score-threshold", "0.0", "--batch-size", "2"])
    captured = capsys.readouterr()
    assert code == 1
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "broken.jpg" in warnings[0]

    document = json.loads((out / DETECTIONS_FILE).read_text())
    assert [entry["file"] for entry in document["failed"]] == [str(image_dir / "broken.jpg")]
    by_name = {entry["output"]: entry for entry in document["images"]}
    assert set(by_name) == {"tall.jpg", "wide.png"}
    assert (by_name["wide.png"]["width"], by_name["wide.png"]["height"]) == (150, 100)
    assert (by_name["tall.jpg"]["width"], by_name["tall.jpg"]["height"]) == (90, 140)
    for name, entry in by_name.items():
        drawn = decode_image(str(out / name))
        assert tuple(drawn.shape) == (3, entry["height"], entry["width"])
        assert 0 < len(entry["detections"]) <= tiny_run.config.inference.max_detections
        for detection in entry["detections"]:
            x0, y0, x1, y1 = detection["box"]
            assert 0 <= x0 <= x1 <= entry["width"] and 0 <= y0 <= y1 <= entry["height"]
            label = detection["label"]
            assert detection["category_id"] == tiny_run.meta.category_ids[label]
            assert detection["class_name"] == tiny_run.meta.class_names[label]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_predict_cli_all_good_images_exit_zero(tiny_run, image_dir, tmp_path):
    (image_dir / "broken.jpg").unlink()
    assert main(["predict", "--weights", str(tiny_run.checkpoint), str(image_dir / "wide.png"),
                 "--out", str(tmp_path / "out")]) == 0
    document = json.loads((tmp_path / "out" / DETECTIONS_FILE).read_text())
    assert [entry["output"] for entry in document["images"]] == ["wide.png"]
    assert document["failed"] == []


def test_predict_refuses_to_write_over_its_inputs(tiny_run, image_dir, capsys):
    before = (image_dir / "wide.png").read_bytes()
    code = main(["predict", "--weights", str(tiny_run.checkpoint), str(image_dir), "--out", str(image_dir)])
    assert code == 2
    assert "--out" in capsys.readouterr().err
    assert (image_dir / "wide.png").read_bytes() == before


def test_predict_bad_checkpoint_is_one_line_error(image_dir, tmp_path, capsys):
    weights = tmp_path / "truncated.pth"
    weights.write_bytes(b"PK\x03\x04 truncated")
    code = main(["predict", "--weights", str(weights), str(image_dir), "--out", str(tmp_path / "out")])
    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1 and "truncated.pth" in error


def test_detect_batched_equals_one_by_one(tiny_run):
    """Same-size images give the same detections whether they share a forward pass or not."""
    from dynatss.engine.trained import load_trained

    detector, cfg, _ = load_trained(tiny_run.checkpoint)
    generator = torch.Generator().manual_seed(1)
    images = [torch.randint(0, 256, (3, 96, 128), dtype=torch.uint8, generator=generator) for _ in range(2)]
    together = detect_images(detector, images, cfg.data, cfg.inference)
    alone = [detect_images(detector, [image], cfg.data, cfg.inference)[0] for image in images]
    for batched, single in zip(together, alone):
        torch.testing.assert_close(batched["boxes"], single["boxes"], atol=1e-3, rtol=1e-4)
        torch.testing.assert_close(batched["scores"], single["scores"], atol=1e-5, rtol=1e-4)
        assert torch.equal(batched["labels"], single["labels"])


def test_predict_writes_beside_the_weights_run_by_default(tiny_run, image_dir, tmp_path, monkeypatch):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run.run_dir, run)
    (image_dir / "broken.jpg").unlink()
    monkeypatch.chdir(tmp_path)
    assert main(["predict", str(image_dir / "wide.png"), "--weights", str(run / "checkpoints" / "last.pth"),
                 "inference.max_detections=2", "--score-threshold", "0"]) == 0
    document = json.loads((run / "predictions" / DETECTIONS_FILE).read_text())
    assert [len(entry["detections"]) for entry in document["images"]] == [2]  # the override applied
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "run"]
