"""Per object size, how many ground-truth boxes a detector boxes at all, and how tightly.

For each detections JSON (written by ``dynatss eval --output``), every ground-truth box is put in
COCO's size bins (area under 32^2, under 96^2, above: small, medium, large) and given its best IoU with
any detection of its own class, whatever the score. Reported per size: the boxes, the share with a
detection at IoU >= 0.5 and the median best IoU. Unlike APl, which also depends on the scores' order,
this separates "no box" from "a box ranked low". Used in docs/results.md for aerial_cars' large buses:

    dynatss eval --weights runs/grid/aerial_cars/ciou_qfl_iou/seed3/checkpoints/last.pth --output /tmp/full
    python experiments/size_recall.py --config configs/experiments/aerial_cars.yaml /tmp/full/detections_test.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `experiments` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torchvision.ops import box_convert, box_iou  # noqa: E402

from experiments.class_errors import add_detection_arguments, load_ground_truth  # noqa: E402

SIZES = (("small", 0.0), ("medium", 32.0**2), ("large", 96.0**2))  # COCO's lower area bounds


def size_of(area: float) -> str:
    """COCO's size bin of a box area (pixels^2)."""
    return [name for name, low in SIZES if area >= low][-1] if area > 0 else "small"


def best_ious(ground_truth: dict, detections: list[dict]) -> list[tuple[str, float]]:
    """(size bin, best IoU with a detection of the same class and image) of every ground-truth box."""
    by_key: dict[tuple[int, int], list[list[float]]] = defaultdict(list)
    for detection in detections:
        by_key[detection["image_id"], detection["category_id"]].append(detection["bbox"])
    out = []
    for annotation in ground_truth["annotations"]:
        x, y, w, h = annotation["bbox"]
        boxes = by_key.get((annotation["image_id"], annotation["category_id"]), [])
        best = 0.0
        if boxes:
            gt = box_convert(torch.tensor([[x, y, w, h]], dtype=torch.float64), "xywh", "xyxy")
            found = box_convert(torch.tensor(boxes, dtype=torch.float64), "xywh", "xyxy")
            best = float(box_iou(gt, found).max())
        out.append((size_of(annotation.get("area", w * h)), best))
    return out


def size_recall(ground_truth: dict, detections: list[dict], iou: float = 0.5) -> dict[str, tuple[int, float, float]]:
    """Per size bin: (ground-truth boxes, share boxed at ``iou`` or more, median best IoU)."""
    by_size: dict[str, list[float]] = defaultdict(list)
    for size, best in best_ious(ground_truth, detections):
        by_size[size].append(best)
    return {name: (len(by_size[name]), sum(b >= iou for b in by_size[name]) / len(by_size[name]),
                   statistics.median(by_size[name]))
            for name, _ in SIZES if by_size[name]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_detection_arguments(parser)
    args = parser.parse_args(argv)
    ground_truth = load_ground_truth(args, "size_recall")
    if ground_truth is None:
        return 1
    print("| detections | size | boxes | boxed at IoU >= 0.5 | median best IoU |")
    print("|---|---|---:|---:|---:|")
    for path in args.detections:
        for size, (count, boxed, median) in size_recall(ground_truth, json.loads(Path(path).read_text())).items():
            print(f"| {path} | {size} | {count} | {boxed:.2f} | {median:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
