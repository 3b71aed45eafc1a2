"""`dynatss export`: the ONNX file (any batch and size, metadata inside) predicts like the checkpoint
through the same Detector API; safetensors round-trips."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from torchvision.io import write_png

from dynatss import Detector
from dynatss.cli.main import main
from dynatss.engine.trained import load_trained
from dynatss.model.inference import detect_images
from dynatss.reports.predictions import DETECTIONS_FILE

SIZE = 128  # the tiny run's test_min_size


def _image() -> torch.Tensor:
    return torch.randint(0, 256, (3, SIZE, SIZE), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def onnx_export(tiny_run, tmp_path_factory):
    """`dynatss export` of the tiny checkpoint: (exit code, stdout, path)."""
    path = tmp_path_factory.mktemp("export") / "tiny.onnx"
    with contextlib.redirect_stdout(io.StringIO()) as out:
        code = main(["export", "--weights", str(tiny_run.checkpoint), "--format", "onnx", "--out", str(path)])
    return code, out.getvalue(), path


def test_export_onnx_cli_writes_the_model_and_its_metadata(onnx_export, tiny_run):
    import onnx

    code, out, path = onnx_export
    assert code == 0 and path.is_file() and str(path) in out
    assert "inputs: images, image_sizes, score_threshold" in out
    assert "outputs: boxes, scores, labels, num_detections" in out
    props = {entry.key: entry.value for entry in onnx.load(str(path), load_external_data=False).metadata_props}
    assert json.loads(props["class_names"]) == list(tiny_run.meta.class_names)
    assert json.loads(props["category_ids"]) == list(tiny_run.meta.category_ids)
    spec = json.loads(props["input_spec"])
    data = tiny_run.config.data
    assert (spec["test_min_size"], spec["max_size"], spec["size_divisibility"]) == (
        data.test_min_size, data.max_size, data.size_divisibility)
    assert spec["color"] == "RGB" and spec["range"] == [0, 255]
    assert json.loads(props["inference"])["max_detections"] == tiny_run.config.inference.max_detections


@pytest.mark.parametrize("shapes", [[(128, 128)], [(100, 150), (140, 90), (128, 128)]])
def test_predict_with_onnx_matches_the_checkpoint(onnx_export, tiny_run, shapes):
    """Detector on the .onnx (onnxruntime) and on the .pth (PyTorch): the same detections, batch 1 and 3,
    images of several sizes (resized and padded into one batch)."""
    _, _, path = onnx_export
    generator = torch.Generator().manual_seed(len(shapes))
    images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=generator) for h, w in shapes]
    reference = Detector.from_checkpoint(tiny_run.checkpoint, device="cpu", score_threshold=0.0)
    exported = Detector.from_checkpoint(path, device="cpu", score_threshold=0.0)
    assert exported.class_names == tiny_run.meta.class_names and exported.config is None
    for want, got in zip(reference.predict(images), exported.predict(images), strict=True):
        assert len(got) == len(want) > 0
        np.testing.assert_allclose(got.scores.numpy(), want.scores.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got.boxes.numpy(), want.boxes.numpy(), rtol=1e-4, atol=1e-2)
        np.testing.assert_array_equal(got.labels.numpy(), want.labels.numpy())
        assert got.class_names == want.class_names


def test_predict_cli_runs_an_onnx_model(onnx_export, tmp_path):
    _, _, path = onnx_export
    image = tmp_path / "a.png"
    write_png(_image(), str(image))
    assert main(["predict", "--weights", str(path), str(image), "--out", str(tmp_path / "out"),
                 "--score-threshold", "0"]) == 0
    document = json.loads((tmp_path / "out" / DETECTIONS_FILE).read_text())
    assert len(document["images"][0]["detections"]) > 0


def test_export_safetensors_round_trip(tiny_run, tmp_path):
    path = tmp_path / "tiny.safetensors"
    assert main(["export", "--weights", str(tiny_run.checkpoint), "--format", "safetensors",
                 "--out", str(path)]) == 0
    image = _image()
    original, cfg, _ = load_trained(tiny_run.checkpoint)
    restored, restored_cfg, meta = load_trained(path)
    assert meta == tiny_run.meta
    (a,) = detect_images(original, [image], cfg.data, cfg.inference)
    (b,) = detect_images(restored, [image], restored_cfg.data, restored_cfg.inference)
    torch.testing.assert_close(a["boxes"], b["boxes"])
    torch.testing.assert_close(a["scores"], b["scores"])


def test_export_refuses_to_overwrite_its_weights(tiny_run, capsys):
    code = main(["export", "--weights", str(tiny_run.checkpoint), "--format", "onnx",
                 "--out", str(tiny_run.checkpoint)])
    assert code == 2 and "overwrite" in capsys.readouterr().err
