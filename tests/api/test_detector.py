"""The public API: Detector.from_checkpoint(...).predict(...) on every input type, and its Result."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.io import write_png

from dynatss import Detector, Result
from dynatss.engine.trained import load_trained
from dynatss.errors import DynatssError
from dynatss.model.inference import detect_images


def _image(height: int = 100, width: int = 150, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def detector(tiny_run) -> Detector:
    return Detector.from_checkpoint(tiny_run.checkpoint, device="cpu", score_threshold=0.0)


def _same(a: Result, b: Result) -> None:
    torch.testing.assert_close(a.boxes, b.boxes)
    torch.testing.assert_close(a.scores, b.scores)
    assert torch.equal(a.labels, b.labels)


def test_every_input_type_gives_the_same_detections(detector, tiny_run, tmp_path):
    image = _image()
    path = tmp_path / "a.png"
    write_png(image, str(path))
    array = image.permute(1, 2, 0).numpy()  # [H, W, 3] RGB
    inputs = [str(path), Image.fromarray(array), array, image, image.float() / 255]
    results = detector.predict(inputs)
    assert isinstance(results, list) and len(results) == len(inputs)
    model, cfg, _ = load_trained(tiny_run.checkpoint)
    (expected,) = detect_images(model, [image], cfg.data, cfg.inference)
    assert len(expected["scores"]) > 0
    for result in results:
        assert (result.width, result.height) == (150, 100)
        torch.testing.assert_close(result.boxes, expected["boxes"])
        torch.testing.assert_close(result.scores, expected["scores"])
    assert results[0].source == str(path) and results[1].source is None


def test_single_input_gives_a_single_result_and_a_batch_tensor_a_list(detector):
    images = torch.stack([_image(seed=1), _image(seed=2)])  # [2, 3, H, W]
    single = detector.predict(images[0])
    assert isinstance(single, Result)
    batch = detector.predict(images, batch_size=1)
    assert isinstance(batch, list) and len(batch) == 2
    _same(batch[0], single)


def test_result_fields_plot_and_dict(detector, tiny_run):
    image = _image(120, 90, seed=3)
    result = detector.predict(image)
    count = len(result)
    assert 0 < count <= tiny_run.config.inference.max_detections
    assert result.boxes.shape == (count, 4) and result.scores.shape == (count,) and result.labels.shape == (count,)
    assert (result.boxes[:, 2] <= 90).all() and (result.boxes[:, 3] <= 120).all() and (result.boxes >= 0).all()
    assert (result.scores[:-1] >= result.scores[1:]).all()  # best first
    assert result.class_names == [tiny_run.meta.class_names[label] for label in result.labels.tolist()]

    document = json.loads(json.dumps(result.to_dict()))
    assert (document["width"], document["height"], document["source"]) == (90, 120, None)
    for row, box, label in zip(document["detections"], result.boxes.tolist(), result.labels.tolist()):
        assert row["box"] == pytest.approx(box, abs=0.01)
        assert row["category_id"] == tiny_run.meta.category_ids[label]
        assert row["class_name"] == tiny_run.meta.class_names[label]

    picture = result.plot()
    assert isinstance(picture, Image.Image) and picture.size == (90, 120) and picture.mode == "RGB"
    assert not np.array_equal(np.asarray(picture), image.permute(1, 2, 0).numpy())  # something was drawn
    assert "image, 90x120" in repr(result)


def test_score_threshold_per_call_and_per_detector(detector, tiny_run):
    image = _image(seed=4)
    assert len(detector.predict(image)) == tiny_run.config.inference.max_detections  # threshold 0
    # The random head's class probabilities sit at its prior (0.01): a threshold of 0.5 keeps nothing.
    assert len(detector.predict(image, score_threshold=0.5)) == 0
    strict = Detector.from_checkpoint(tiny_run.checkpoint, device="cpu", score_threshold=0.5)
    assert len(strict.predict(image)) == 0 and len(strict.predict(image, score_threshold=0.0)) > 0


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((10, 10, 3), np.float32), "must be uint8"),
        (np.zeros((3, 10, 10), np.uint8), "HxWx3"),
        (torch.zeros(5, 10, 10, dtype=torch.uint8), "3xHxW"),
        (torch.full((3, 10, 10), 255.0), "0..1"),
        (42, "cannot read a int"),
    ],
)
def test_unreadable_inputs_are_one_line_errors(detector, bad, message):
    with pytest.raises(DynatssError, match=message) as caught:
        detector.predict(bad)
    assert "\n" not in str(caught.value)


def test_missing_image_file_names_it(detector, tmp_path):
    with pytest.raises(DynatssError, match="nope.jpg"):
        detector.predict(tmp_path / "nope.jpg")


def test_config_from_the_checkpoint_unless_given(tiny_run, tmp_path):
    saved = Detector.from_checkpoint(tiny_run.checkpoint, device="cpu")
    assert saved.config.data.test_min_size == tiny_run.config.data.test_min_size
    assert saved.class_names == tiny_run.meta.class_names
    capped = Detector.from_checkpoint(tiny_run.checkpoint, device="cpu", score_threshold=0.0,
                                      overrides=["inference.max_detections=2"])
    assert len(capped.predict(_image(seed=5))) == 2
    config = tmp_path / "given.yaml"
    config.write_text("model: {backbone: resnet18, fpn_channels: 32, head_channels: 64, head_convs: 1}\n"
                      "data: {test_min_size: 64, max_size: 64, size_divisibility: 32}\n")
    given = Detector.from_checkpoint(tiny_run.checkpoint, device="cpu", config=config)
    assert given.config.data.test_min_size == 64
    assert given.config.model.num_classes == len(tiny_run.meta.class_names)  # from the weights


def test_evaluate_uses_the_checkpoint_config(tiny_run, tmp_path):
    # The fixture's 3-image synthetic split as it was generated (else it is generated again, full size).
    same_data = ["data.synthetic_train_images=1", "data.synthetic_val_images=3", "data.synthetic_image_size=96"]
    detector = Detector.from_checkpoint(tiny_run.checkpoint, device="cpu", overrides=["data.num_workers=0", *same_data])
    result = detector.evaluate("val")
    assert set(result.metrics) >= {"AP", "AP50", "AR100"}
    assert len(result.records) == 3 and len({d["image_id"] for d in result.detections}) == 3
    # every detection of the checkpoint's inference rule (score >= 0.0, 5 per image), not the display threshold
    assert len(result.detections) == 3 * tiny_run.config.inference.max_detections
    assert not list(tmp_path.iterdir())  # evaluate writes nothing
    capped = Detector.from_checkpoint(tiny_run.checkpoint, device="cpu",
                                      overrides=["data.num_workers=0", "inference.max_detections=2", *same_data])
    assert len(capped.evaluate("val").detections) == 3 * 2  # the overrides are the config used


def test_an_image_gives_the_same_detections_alone_or_beside_a_larger_one(detector):
    """The default batch of 1 pads each image only to its own size (no padding from a neighbour)."""
    small, large = _image(80, 80, seed=3), _image(100, 300, seed=4)
    alone = detector.predict(small)
    assert len(alone) > 0
    _same(detector.predict([large, small])[1], alone)


def test_folders_globs_and_lists_of_them(detector, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for seed, name in ((6, "b.png"), (7, "a.png")):
        write_png(_image(seed=seed), str(folder / name))
    (folder / "notes.txt").write_text("not an image")
    from_folder = detector.predict(folder)
    assert [Path(r.source).name for r in from_folder] == ["a.png", "b.png"]  # sorted, images only
    from_glob = detector.predict(str(folder / "b*.png"))
    assert isinstance(from_glob, list) and [Path(r.source).name for r in from_glob] == ["b.png"]
    _same(from_glob[0], from_folder[1])
    mixed = detector.predict([folder, _image(seed=7)])
    assert len(mixed) == 3 and mixed[2].source is None
    _same(mixed[2], from_folder[0])  # a.png holds _image(seed=7)
    with pytest.raises(DynatssError, match="no file matches"):
        detector.predict(str(folder / "*.jpg"))


def test_per_call_classes_nms_and_maximum(detector):
    image = _image(seed=8)
    everything = detector.predict(image)
    assert len(set(everything.labels.tolist())) > 1
    kept = everything.labels[0].item()
    only = detector.predict(image, classes=[kept])
    assert len(only) > 0 and set(only.labels.tolist()) == {kept}
    # Filtered before the per-image maximum: up to max_detections of that class, the best first.
    assert only.scores[0] == everything.scores[0]
    assert len(detector.predict(image, max_detections=2)) == 2
    strict = detector.predict(image, nms_iou=0.0, max_detections=50)  # any overlap suppresses
    loose = detector.predict(image, nms_iou=1.0, max_detections=50)
    assert len(strict) < len(loose)
    with pytest.raises(DynatssError, match="classes must be class indices"):
        detector.predict(image, classes=[99])


def test_plot_options(detector):
    result = detector.predict(_image(120, 160, seed=9), max_detections=1)
    image = result.image.permute(1, 2, 0).numpy()

    def changed(picture) -> int:
        return int((np.asarray(picture) != image).any(-1).sum())

    thin, thick = result.plot(line_width=1, labels=False, conf=False), result.plot(line_width=6, labels=False, conf=False)
    assert 0 < changed(thin) < changed(thick)
    captioned = result.plot(line_width=1)
    assert changed(captioned) > changed(thin)  # the caption's label
    assert changed(result.plot(line_width=1, font_size=30)) > changed(captioned)
