"""Where one class's detections go wrong: AP at several IoUs and what its confident false positives are.

For each detections JSON (written by ``dynatss eval --output``), the detections of one class are
matched to its ground truth per image, highest score first, at IoU 0.5 (COCO's greedy rule). Each
unmatched detection above ``--score`` is put in one of four kinds by its largest IoU with the ground
truth: a duplicate (>= 0.5 with a box of its class that another detection already matched), a poor box
(0.1-0.5 with a box of its class), on another class (>= 0.1 with a box of another class), background.
Used in docs/results_analysis.md:

    dynatss eval --weights runs/grid/bccd/atss/seed0/checkpoints/last.pth --output /tmp/atss/detections.json
    python experiments/class_errors.py --weights runs/grid/bccd/atss/seed0/checkpoints/last.pth \\
        --class-name Platelets /tmp/atss/detections.json /tmp/full/detections.json

The platelet detections behind docs/results_analysis.md are committed, so the table needs no checkpoint:

    python experiments/class_errors.py --config configs/experiments/bccd.yaml --class-name Platelets \\
        docs/results/bccd/platelet_detections/*.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import Counter
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `experiments` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torchvision.ops import box_convert, box_iou  # noqa: E402

KINDS = ("duplicate", "poor box", "on another class", "background")


def _xyxy(boxes: list[list[float]]) -> torch.Tensor:
    """COCO xywh boxes -> [N, 4] xyxy."""
    return box_convert(torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4), "xywh", "xyxy")


def classify_detections(detections: list[dict], class_boxes: list[list[float]], other_boxes: list[list[float]],
                        score: float) -> tuple[list[float], list[float], Counter]:
    """One image, one class: (scores of true positives, scores of false positives, kinds of FPs > score)."""
    detections = sorted(detections, key=lambda d: -d["score"])
    ious = box_iou(_xyxy([d["bbox"] for d in detections]), _xyxy(class_boxes))  # [D, G]
    other_ious = box_iou(_xyxy([d["bbox"] for d in detections]), _xyxy(other_boxes))  # [D, O]
    matched = torch.zeros(len(class_boxes), dtype=torch.bool)
    tp_scores, fp_scores, kinds = [], [], Counter()
    for index, detection in enumerate(detections):  # COCO's greedy matching is sequential by nature
        free = ious[index].masked_fill(matched, -1.0)
        if len(class_boxes) and float(free.max()) >= 0.5:
            matched[int(free.argmax())] = True
            tp_scores.append(detection["score"])
            continue
        fp_scores.append(detection["score"])
        if detection["score"] <= score:
            continue
        best_same = float(ious[index].max()) if len(class_boxes) else 0.0
        best_other = float(other_ious[index].max()) if len(other_boxes) else 0.0
        kind = ("duplicate" if best_same >= 0.5 else "poor box" if best_same >= 0.1
                else "on another class" if best_other >= 0.1 else "background")
        kinds[kind] += 1
    return tp_scores, fp_scores, kinds


def class_errors(ground_truth: dict, detections: list[dict], category_id: int, score: float) -> dict:
    """Counts over a split: true positives, false positives above ``score`` and above the median TP score."""
    tp_scores, fp_scores, kinds = [], [], Counter()
    for image in ground_truth["images"]:
        annotations = [a for a in ground_truth["annotations"] if a["image_id"] == image["id"] and not a.get("iscrowd")]
        tp, fp, image_kinds = classify_detections(
            [d for d in detections if d["image_id"] == image["id"] and d["category_id"] == category_id],
            [a["bbox"] for a in annotations if a["category_id"] == category_id],
            [a["bbox"] for a in annotations if a["category_id"] != category_id], score)
        tp_scores += tp
        fp_scores += fp
        kinds += image_kinds
    median_tp = statistics.median(tp_scores) if tp_scores else float("nan")
    return {"true_positives": len(tp_scores), "median_tp_score": median_tp,
            "fp_above_median_tp": sum(s > median_tp for s in fp_scores),
            "fp_above_score": sum(s > score for s in fp_scores), **{kind: kinds[kind] for kind in KINDS}}


def class_ap(ground_truth: dict, detections: list[dict], category_id: int) -> tuple[float, float]:
    """COCO AP of one class at IoU 0.5 and 0.75 (faster-coco-eval, all areas, 100 detections)."""
    from faster_coco_eval import COCO, COCOeval_faster

    gt = COCO()
    gt.dataset = ground_truth
    gt.createIndex()
    evaluation = COCOeval_faster(gt, gt.loadRes(detections), "bbox", print_function=lambda *a, **k: None)
    evaluation.params.catIds = [category_id]
    evaluation.evaluate()
    evaluation.accumulate()
    precision = evaluation.eval["precision"][:, :, 0, 0, -1]  # [IoU thresholds, recall points]
    at = {round(float(t), 2): row for t, row in zip(evaluation.params.iouThrs, precision)}
    return tuple(float(at[t][at[t] > -1].mean()) for t in (0.5, 0.75))


def add_detection_arguments(parser: argparse.ArgumentParser) -> None:
    """The detections files and where their ground truth comes from (a checkpoint's or a config's data)."""
    parser.add_argument("detections", nargs="+", help="detections JSON files of dynatss eval --output")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--weights", help="a checkpoint whose config names the data")
    source.add_argument("--config", help="a config file whose data section names the data")
    parser.add_argument("--split", default=None, help="default: the config's data.val_split")


def load_ground_truth(args: argparse.Namespace, program: str) -> dict | None:
    """The COCO-format ground truth of the split ``args`` names (see add_detection_arguments); None
    after one line on stderr, prefixed with ``program``, when the data or checkpoint cannot be read."""
    from dynatss.config import load_config
    from dynatss.data.coco_io import records_to_coco
    from dynatss.engine.build import load_split
    from dynatss.engine.trained import load_trained
    from dynatss.errors import DynatssError

    try:
        cfg = load_config(args.config) if args.config else load_trained(args.weights)[1]
        split = load_split(cfg.data, args.split or cfg.data.val_split)
    except DynatssError as error:
        print(f"{program}: {error}", file=sys.stderr)
        return None
    return records_to_coco(split.records, split.meta)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_detection_arguments(parser)
    parser.add_argument("--class-name", required=True)
    parser.add_argument("--score", type=float, default=0.3)
    args = parser.parse_args(argv)
    ground_truth = load_ground_truth(args, "class_errors")
    if ground_truth is None:
        return 1
    categories = {c["name"]: c["id"] for c in ground_truth["categories"]}
    if args.class_name not in categories:
        print(f"class_errors: --class-name {args.class_name!r} is not a class of the dataset {sorted(categories)}",
              file=sys.stderr)
        return 1
    category_id = categories[args.class_name]
    print(f"| detections | AP50 | AP75 | TPs | median TP score | FPs > median TP | FPs > {args.score} | "
          + " | ".join(KINDS) + " |")
    print("|---|" + "---:|" * (6 + len(KINDS)))
    for path in args.detections:
        detections = json.loads(Path(path).read_text())
        ap50, ap75 = class_ap(ground_truth, detections, category_id)
        counts = class_errors(ground_truth, detections, category_id, args.score)
        print(f"| {path} | {100 * ap50:.1f} | {100 * ap75:.1f} | {counts['true_positives']} | "
              f"{counts['median_tp_score']:.3f} | {counts['fp_above_median_tp']} | {counts['fp_above_score']} | "
              + " | ".join(str(counts[kind]) for kind in KINDS) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
