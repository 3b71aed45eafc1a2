"""`dynatss export`: the ONNX file runs in onnxruntime and matches PyTorch; safetensors round-trips."""

from __future__ import annotations

import stat

import numpy as np
import torch

from dynatss.atomic import default_file_mode
from dynatss.cli.main import main
from dynatss.engine.inference import load_detector
from dynatss.tools.predict import detect

SIZE = 128  # the tiny run's test_min_size: the image is not resized, so both paths see the same pixels


def _image() -> torch.Tensor:
    return torch.randint(0, 256, (3, SIZE, SIZE), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))


def test_export_onnx_cli_matches_pytorch(tiny_run, tmp_path, capsys):
    import onnxruntime
    path = tmp_path / "tiny.onnx"
    code = main(["export", "--weights", str(tiny_run.checkpoint), "--format", "onnx",
                 "--height", str(SIZE), "--width", str(SIZE), "--out", str(path)])
    out = capsys.readouterr().out
    assert code == 0 and path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == default_file_mode()  # not tempfile's 0600 (issue 11)
    assert str(path) in out and "inputs: images" in out and "outputs: boxes, scores, labels" in out

    image = _image()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    boxes, scores, labels = session.run(None, {"images": image[None].float().numpy()})
    detector, cfg, _ = load_detector(tiny_run.checkpoint)
    (expected,) = detect(detector, [image], cfg, device="cpu")
    assert len(scores) == len(expected["scores"]) > 0
    order = np.argsort(-scores, kind="stable")
    np.testing.assert_allclose(scores[order], expected["scores"].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(boxes[order], expected["boxes"].numpy(), rtol=1e-4, atol=1e-2)
    np.testing.assert_array_equal(labels[order], expected["labels"].numpy())


def test_export_safetensors_round_trip(tiny_run, tmp_path):
    path = tmp_path / "tiny.safetensors"
    assert main(["export", "--weights", str(tiny_run.checkpoint), "--format", "safetensors",
                 "--out", str(path)]) == 0
    image = _image()
    original, cfg, _ = load_detector(tiny_run.checkpoint)
    restored, restored_cfg, meta = load_detector(path)
    assert meta == tiny_run.meta
    (a,) = detect(original, [image], cfg, device="cpu")
    (b,) = detect(restored, [image], restored_cfg, device="cpu")
    torch.testing.assert_close(a["boxes"], b["boxes"])
    torch.testing.assert_close(a["scores"], b["scores"])


def test_export_refuses_to_overwrite_its_weights(tiny_run, capsys):
    code = main(["export", "--weights", str(tiny_run.checkpoint), "--format", "onnx",
                 "--out", str(tiny_run.checkpoint)])
    assert code == 2 and "overwrite" in capsys.readouterr().err
