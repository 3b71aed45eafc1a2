"""One inference path: ``Detector.predict``, `dynatss predict`, `dynatss eval`, `dynatss report`'s
samples, `dynatss assign`, a video and the ONNX backend (and the raw ONNX graph) find the same boxes
for the same image and weights (issue 19). Each way goes through dynatss.model.inference."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import numpy as np
import onnxruntime
import pytest
import torch

from dynatss import Detector
from dynatss.cli.main import main
from dynatss.config import DISPLAY_SCORE_THRESHOLD, config_to_dict
from dynatss.data.transforms import load_image
from dynatss.engine.checkpoint import load_checkpoint, save_checkpoint
from dynatss.model.inference import prepare_images, to_original_pixels
from tests.reports.fake_runs import write_fake_run

THRESHOLD = DISPLAY_SCORE_THRESHOLD  # what predict, report and assign draw


@pytest.fixture(scope="module")
def run(tiny_run, tmp_path_factory) -> Path:
    """The tiny run with its class logits raised so that detections clear the display threshold."""
    run_dir = tmp_path_factory.mktemp("one_path") / "run"
    shutil.copytree(tiny_run.run_dir, run_dir)
    checkpoint = load_checkpoint(tiny_run.checkpoint)
    checkpoint["model"]["head.cls_logits.bias"] = torch.full_like(checkpoint["model"]["head.cls_logits.bias"], 3.0)
    config = config_to_dict(tiny_run.config)
    config["data"].update(synthetic_train_images=1, synthetic_val_images=3, synthetic_image_size=96, num_workers=0)
    checkpoint["config"] = config
    save_checkpoint(checkpoint, run_dir / "checkpoints" / "best.pth")
    (run_dir / "checkpoints" / "last.pth").unlink()
    write_fake_run(run_dir, class_names=tiny_run.meta.class_names)
    return run_dir


@pytest.fixture(scope="module")
def image(tiny_run) -> Path:
    return sorted((Path(tiny_run.config.data.root) / "val").rglob("*.png"))[0]


def _boxes(rows: list[dict], key: str = "box") -> np.ndarray:
    return np.array([row[key] for row in rows], dtype=np.float64).reshape(-1, 4)


def test_every_way_finds_the_same_boxes(run, image, tmp_path, capsys):
    weights = run / "checkpoints" / "best.pth"
    detector = Detector.from_checkpoint(weights, device="cpu")
    reference = detector.predict(image)
    assert 0 < len(reference) <= 5 and (reference.scores >= THRESHOLD).all()
    want = reference.boxes.double().numpy()

    # `dynatss predict`: detections.json
    assert main(["predict", "--weights", str(weights), str(image), "--out", str(tmp_path / "predict")]) == 0
    (entry,) = json.loads((tmp_path / "predict" / "detections.json").read_text())["images"]
    np.testing.assert_allclose(_boxes(entry["detections"]), want, atol=0.006)

    # `dynatss eval`: the COCO detections of that image (xywh), every one of the rule, by score
    assert main(["eval", "--weights", str(weights), "--out", str(tmp_path / "eval")]) == 0
    coco = json.loads((tmp_path / "eval" / "detections_val.json").read_text())
    image_id = next(d["image_id"] for d in coco if _same_image(d, coco, reference))
    rows = sorted((d for d in coco if d["image_id"] == image_id and d["score"] >= THRESHOLD),
                  key=lambda d: -d["score"])
    xyxy = np.array([[x, y, x + w, y + h] for x, y, w, h in (d["bbox"] for d in rows)])
    np.testing.assert_allclose(xyxy, want, atol=0.011)

    # `dynatss report`: the samples' detections (the first sample is the split's first image)
    assert main(["report", str(run), "--images", "3", "--no-eval", "--out", str(tmp_path / "report")]) == 0
    samples = json.loads((tmp_path / "report" / "report" / "samples.json").read_text())["images"]
    sample = next(s for s in samples if Path(s["source"]).name == image.name)
    np.testing.assert_allclose(_boxes(sample["detections"]), want, atol=0.006)

    # `dynatss assign`: the detector's detections on the image it assigns on
    assert main(["assign", str(image), "--weights", str(weights), "--out", str(tmp_path / "assign")]) == 0
    assigned = json.loads((tmp_path / "assign" / f"assign_{image.stem}.json").read_text())
    np.testing.assert_allclose(_boxes(assigned["detections"]), want, atol=0.006)
    capsys.readouterr()


def _same_image(detection: dict, coco: list[dict], reference) -> bool:
    """The COCO image whose best detection is the reference's best (image ids are the dataset's)."""
    best = max((d for d in coco if d["image_id"] == detection["image_id"]), key=lambda d: d["score"])
    x, y, w, h = best["bbox"]
    return np.allclose([x, y, x + w, y + h], reference.boxes[0].numpy(), atol=0.011)


def test_a_video_frame_gives_what_its_image_gives(run, image, tmp_path):
    detector = Detector.from_checkpoint(run / "checkpoints" / "best.pth", device="cpu")
    path = tmp_path / "clip.mp4"
    frame = load_image(image).permute(1, 2, 0).numpy()  # [H, W, 3]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = frame.shape[1], frame.shape[0], "yuv420p"
        for _ in range(2):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    for result in detector.stream(path):
        alone = detector.predict(result.image)  # the decoded frame, as an image
        assert len(result) > 0 and torch.equal(result.boxes, alone.boxes) and torch.equal(result.scores, alone.scores)


def test_onnx_backend_and_raw_graph_match_the_checkpoint_at_the_display_threshold(run, image, tmp_path):
    weights = run / "checkpoints" / "best.pth"
    torch_detector = Detector.from_checkpoint(weights, device="cpu")
    path = torch_detector.export(tmp_path / "model.onnx")
    onnx_detector = Detector.from_checkpoint(path, device="cpu")
    for threshold in (0.0, THRESHOLD, 0.54):
        want = torch_detector.predict(image, score_threshold=threshold)
        got = onnx_detector.predict(image, score_threshold=threshold)
        assert len(got) == len(want)
        np.testing.assert_allclose(got.boxes.numpy(), want.boxes.numpy(), atol=1e-3)
        np.testing.assert_allclose(got.scores.numpy(), want.scores.numpy(), atol=1e-5)
        # The raw graph (docs/export.md's recipe): its input threshold is the same final-score threshold.
        prepared = prepare_images([load_image(image)], torch_detector.config.data)
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        boxes, scores, _, counts = session.run(None, {
            "images": prepared.images.float().contiguous().numpy(), "image_sizes": prepared.image_sizes.numpy(),
            "score_threshold": np.array(threshold, np.float32)})
        assert counts[0] == len(want)
        raw = to_original_pixels(torch.from_numpy(boxes[0, : counts[0]]), prepared.image_sizes[0],
                                 prepared.original_sizes[0])
        np.testing.assert_allclose(raw.numpy(), want.boxes.numpy(), atol=1e-3)
    assert len(torch_detector.predict(image, score_threshold=0.54)) < len(torch_detector.predict(image, score_threshold=0.0))
