"""experiments/size_recall.py: COCO size bins, best same-class IoU per box, the share boxed."""

from __future__ import annotations

import pytest

from experiments.size_recall import best_ious, main, size_of, size_recall


def _gt(image_id: int, box: list[float], category_id: int = 1) -> dict:
    return {"image_id": image_id, "category_id": category_id, "bbox": box, "area": box[2] * box[3]}


def _det(image_id: int, box: list[float], category_id: int = 1, score: float = 0.01) -> dict:
    return {"image_id": image_id, "category_id": category_id, "bbox": box, "score": score}


def test_size_bins_are_cocos():
    assert [size_of(a) for a in (0.0, 31.9**2, 32.0**2, 95.9**2, 96.0**2, 500.0**2)] == [
        "small", "small", "medium", "medium", "large", "large"]


def test_best_iou_counts_only_its_own_class_and_image_whatever_the_score():
    ground_truth = {"annotations": [_gt(1, [0, 0, 100, 100]), _gt(1, [200, 200, 10, 10]), _gt(2, [0, 0, 40, 40])]}
    detections = [
        _det(1, [0, 0, 100, 50]),  # IoU 0.5 with the large box, at a tiny score
        _det(1, [0, 0, 100, 100], category_id=2),  # exact, but another class
        _det(1, [0, 0, 40, 40]),  # the medium box's shape, in the wrong image
        _det(1, [205, 200, 10, 10]),  # the small box shifted by half: IoU 5 x 10 / 150 = 1/3
    ]
    assert best_ious(ground_truth, detections) == [("large", pytest.approx(0.5)), ("small", pytest.approx(1 / 3)),
                                                   ("medium", 0.0)]
    recall = size_recall(ground_truth, detections)
    assert recall == {"small": (1, 0.0, pytest.approx(1 / 3)), "medium": (1, 0.0, 0.0),
                      "large": (1, 1.0, pytest.approx(0.5))}
    # Two large boxes, one boxed: half of them, median of the two best IoUs.
    ground_truth["annotations"].append(_gt(2, [0, 0, 200, 100]))
    assert size_recall(ground_truth, detections)["large"] == (2, 0.5, pytest.approx(0.25))


def test_missing_data_is_one_line_naming_the_tool(tmp_path, capsys):
    config = tmp_path / "missing.yaml"
    config.write_text(f"data:\n  format: voc\n  root: {tmp_path / 'nowhere'}\n  val_split: test\n")
    assert main(["--config", str(config), str(tmp_path / "detections.json")]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("size_recall: ") and "nowhere" in error
