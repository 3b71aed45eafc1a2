from pathlib import Path

import numpy as np
import pytest
import torch

from dynatss.config import load_config
from dynatss.data.datasets import read_dataset
from dynatss.data.loader import build_test_loader
from dynatss.data.records import DatasetMeta, ImageRecord
from dynatss.engine.evaluate import coco_metrics, detections_to_coco, evaluate, format_table
from dynatss.model.build import build_detector

from .tiny import tiny_overrides

META = DatasetMeta(class_names=("cat", "dog"), category_ids=(17, 42))


def records() -> list[ImageRecord]:
    return [
        ImageRecord(
            image_id=5, path=Path("a.png"), width=200, height=100,
            boxes=np.array([[10, 10, 60, 50], [100, 20, 190, 90]], np.float32),
            labels=np.array([0, 1], np.int64), ignore=np.zeros(2, bool),
        ),
        ImageRecord(
            image_id=9, path=Path("b.png"), width=120, height=120,
            boxes=np.array([[0, 0, 100, 110]], np.float32),
            labels=np.array([1], np.int64), ignore=np.zeros(1, bool),
        ),
    ]  # fmt: skip


def perfect_detections() -> list[dict]:
    detections = []
    for record in records():
        detections += detections_to_coco(
            record.image_id, torch.from_numpy(record.boxes), torch.ones(len(record.labels)),
            torch.from_numpy(record.labels), META,
        )
    return detections


def gt() -> dict:
    from dynatss.data.coco_io import records_to_coco

    return records_to_coco(records(), META)


def test_detections_use_dataset_category_ids_and_xywh():
    result = detections_to_coco(
        3, torch.tensor([[10.0, 20.0, 40.0, 60.0]]), torch.tensor([0.5]), torch.tensor([1]), META
    )
    assert result == [{"image_id": 3, "category_id": 42, "bbox": [10.0, 20.0, 30.0, 40.0], "score": 0.5}]


def test_perfect_detections_give_ap_one():
    metrics, per_class = coco_metrics(gt(), perfect_detections(), META)
    for name in ("AP", "AP50", "AP75", "AR100"):
        assert metrics[name] == pytest.approx(1.0)
    assert per_class == pytest.approx({"cat": 1.0, "dog": 1.0})


def test_wrong_class_scores_zero_for_that_class():
    detections = perfect_detections()
    for d in detections:
        if d["category_id"] == 17:
            d["category_id"] = 42
    metrics, per_class = coco_metrics(gt(), detections, META)
    assert per_class["cat"] == 0.0
    assert 0.0 < metrics["AP"] < 1.0


def test_no_detections_give_ap_zero_without_crashing():
    metrics, per_class = coco_metrics(gt(), [], META)
    assert metrics["AP"] == 0.0 and metrics["AP50"] == 0.0 and metrics["AR100"] == 0.0
    assert per_class == {"cat": 0.0, "dog": 0.0}
    assert "AP50" in format_table(type("R", (), {"metrics": metrics, "per_class": per_class})())


def test_evaluate_runs_the_model_and_handles_no_detections(synthetic_root, tmp_path):
    cfg = load_config(None, tiny_overrides(synthetic_root, tmp_path))
    cfg.inference.score_threshold = 1.1  # above any score (a config file may not say so: range [0, 1])
    dataset = read_dataset("coco", synthetic_root, "val")
    cfg.model.num_classes = dataset.meta.num_classes
    model = build_detector(cfg.model)
    loader = build_test_loader(dataset.records, cfg.data, batch_size=2)
    result = evaluate(model, loader, dataset.records, dataset.meta, cfg, torch.device("cpu"))
    assert result.detections == []
    assert result.metrics["AP"] == 0.0
    assert model.training  # evaluate restores the mode it found


def test_an_image_scores_the_same_whatever_images_share_its_evaluation(synthetic_root, tmp_path):
    """data.test_batch_size 1 (the default): no padding from a larger neighbour in the batch."""
    from torchvision.io import write_png

    cfg = load_config(None, tiny_overrides(synthetic_root, tmp_path))
    cfg.inference.score_threshold = 0.0
    cfg.model.num_classes = 2
    cfg.data.max_size = 288  # the wide image keeps its 96 x 288
    generator = torch.Generator().manual_seed(0)
    paths, sizes = [tmp_path / "square.png", tmp_path / "wide.png"], [(96, 96), (96, 288)]
    for path, (height, width) in zip(paths, sizes):
        write_png(torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator), str(path))
    images = [ImageRecord(image_id=i + 1, path=path, width=w, height=h, boxes=np.array([[5, 5, 40, 40]], np.float32),
                          labels=np.array([0], np.int64), ignore=np.zeros(1, bool))
              for i, (path, (h, w)) in enumerate(zip(paths, sizes))]
    torch.manual_seed(0)
    model = build_detector(cfg.model).eval()
    with torch.no_grad():  # scores that vary with the features, so that padding would show
        model.head.cls_logits.weight.normal_(std=0.5)
        model.head.cls_logits.bias.zero_()
    meta = DatasetMeta(class_names=("a", "b"), category_ids=(1, 2))

    def square_detections(records, batch_size):
        loader = build_test_loader(records, cfg.data, batch_size=batch_size)
        result = evaluate(model, loader, records, meta, cfg, torch.device("cpu"))
        return sorted((d["score"], tuple(d["bbox"])) for d in result.detections if d["image_id"] == 1)

    alone = square_detections(images[:1], cfg.data.test_batch_size)
    assert cfg.data.test_batch_size == 1 and len(alone) > 0
    assert square_detections(images, cfg.data.test_batch_size) == alone
    assert square_detections(images, 2) != alone  # batched with the wide image, it is padded to 96x288
