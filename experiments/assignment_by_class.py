"""Per class, what a trained detector's assignment and scores look like on training batches.

For a checkpoint, runs the model (eval mode, no training) on a few training batches of its own
config's data and reports per class: positives per GT under ATSS and under combined IoUs, the mean
AIoU and PIoU of the combined-IoU positives, and the mean classification probability (at the GT's
class) and quality probability at those positives; the same counts and IoUs with each GT capped at
ATSS's count (``assign.max_positives=atss``); then, per class and pyramid level, the positives per GT
under ATSS, the paper's combined IoUs, combined IoUs on the anchors' levels (``assign.levels=anchor``)
and capped combined IoUs. Used in docs/results_analysis.md.

    python experiments/assignment_by_class.py runs/grid/bccd/ciou_qfl_iou/seed0/checkpoints/last.pth
"""

from __future__ import annotations

import argparse
import sys

import torch

from dynatss.assign import atss_assign
from dynatss.assign.atss import candidate_levels
from dynatss.data.loader import build_train_loader
from dynatss.engine.build import load_split
from dynatss.engine.trained import load_trained


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("weights")
    parser.add_argument("--batches", type=int, default=6)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, cfg, meta = load_trained(args.weights)
    split = load_split(cfg.data, cfg.data.train_split)
    stream = iter(build_train_loader(split.records, cfg.data, batch_size=cfg.solver.batch_size, seed=0))
    rows = {name: {"gts": 0, "atss": 0, "dynamic": 0, "capped": 0, "aiou": [], "piou": [], "cls": [], "quality": [],
                   "capped_aiou": [], "capped_piou": []}
            for name in meta.class_names}
    rules = ("ATSS", "combined", "combined, anchors' levels", "combined, at most ATSS's count")
    num_levels = None
    level_counts = None  # [rules, classes, levels]
    for _ in range(args.batches):
        batch = next(stream)
        with torch.no_grad():
            outputs = model(batch.images)
        pred = model.box_coder.decode(outputs.box_deltas, outputs.anchors)  # [B, A, 4]
        boxes = batch.gt_boxes.float()
        plain = atss_assign(outputs.anchors, outputs.num_anchors_per_level, boxes, batch.gt_valid)
        dynamic = atss_assign(outputs.anchors, outputs.num_anchors_per_level, boxes, batch.gt_valid, pred)
        gated = atss_assign(outputs.anchors, outputs.num_anchors_per_level, boxes, batch.gt_valid, pred,
                            levels="anchor")
        capped = atss_assign(outputs.anchors, outputs.num_anchors_per_level, boxes, batch.gt_valid, pred,
                             max_positives="atss")
        num_levels = len(outputs.num_anchors_per_level)
        anchor_level = candidate_levels(torch.arange(len(outputs.anchors)), outputs.num_anchors_per_level)  # [A]
        if level_counts is None:
            level_counts = torch.zeros(len(rules), len(meta.class_names), num_levels, dtype=torch.long)
        for rule, assignment in enumerate((plain, dynamic, gated, capped)):
            image, anchor = assignment.positive.nonzero(as_tuple=True)  # [P]
            label = batch.gt_labels[image, assignment.gt_index[image, anchor]]  # [P]
            level_counts[rule] += torch.bincount(label * num_levels + anchor_level[anchor],
                                                 minlength=len(meta.class_names) * num_levels
                                                 ).view(len(meta.class_names), num_levels)
        for image in range(boxes.shape[0]):
            for gt in torch.nonzero(batch.gt_valid[image]).flatten().tolist():
                row = rows[meta.class_names[int(batch.gt_labels[image, gt])]]
                label = int(batch.gt_labels[image, gt])
                mine = dynamic.gt_index[image] == gt  # [A]
                row["gts"] += 1
                row["atss"] += int((plain.gt_index[image] == gt).sum())
                row["dynamic"] += int(mine.sum())
                kept = capped.gt_index[image] == gt  # [A]
                row["capped"] += int(kept.sum())
                row["capped_aiou"] += capped.anchor_ious[image][kept].tolist()
                row["capped_piou"] += capped.pred_ious[image][kept].tolist()
                row["aiou"] += dynamic.anchor_ious[image][mine].tolist()
                row["piou"] += dynamic.pred_ious[image][mine].tolist()
                row["cls"] += outputs.cls_logits[image][mine, label].sigmoid().tolist()
                row["quality"] += outputs.quality_logits[image][mine].sigmoid().tolist()
    print("| class | GTs | positives/GT ATSS | combined | AIoU | PIoU | cls prob | quality prob "
          "| capped | AIoU | PIoU |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, row in rows.items():
        if not row["gts"]:
            continue
        means = [sum(v) / len(v) if v else float("nan") for v in (row["aiou"], row["piou"], row["cls"], row["quality"])]
        capped_means = [sum(v) / len(v) if v else float("nan") for v in (row["capped_aiou"], row["capped_piou"])]
        print(f"| {name} | {row['gts']} | {row['atss'] / row['gts']:.2f} | {row['dynamic'] / row['gts']:.2f} | "
              + " | ".join(f"{m:.3f}" for m in means) + f" | {row['capped'] / row['gts']:.2f} | "
              + " | ".join(f"{m:.3f}" for m in capped_means) + " |")
    print("\nPositives per GT on each level (P3 first):\n")
    print("| class | rule | " + " | ".join(f"P{level + 3}" for level in range(num_levels)) + " |")
    print("|---|---|" + "---:|" * num_levels)
    for index, (name, row) in enumerate(rows.items()):
        for rule, label in enumerate(rules):
            if row["gts"]:
                per_gt = level_counts[rule, index].double() / row["gts"]
                print(f"| {name} | {label} | " + " | ".join(f"{v:.2f}" for v in per_gt.tolist()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
