"""What the assignment does before any training, per head and ``model.box_init`` (docs/heads.md).

For a few training batches of a config's data, builds each head (ATSS, GFLV2, VFNet) with the
config's backbone and each ``box_init``, and counts the GTs left without a positive and the
positives per GT under ATSS and under combined IoUs. Nothing is trained.

    python experiments/initial_assignment.py configs/recipes/small_data_cpu.yaml \\
        --dataset bccd [--batches 4] [key.sub=value ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make `experiments` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dynatss.assign import atss_assign  # noqa: E402
from dynatss.config import load_config  # noqa: E402
from dynatss.data.loader import build_train_loader  # noqa: E402
from dynatss.engine.build import load_split, with_num_classes  # noqa: E402
from dynatss.model.build import build_detector  # noqa: E402
from experiments.ablation import dataset_overrides  # noqa: E402

SETTINGS = (("atss", "anchor"), ("gfl", "official"), ("gfl", "anchor"), ("vfnet", "official"), ("vfnet", "anchor"))


def predicted_boxes(model: torch.nn.Module, outputs) -> torch.Tensor:
    """[B, A, 4]: the boxes each head's criterion takes its PIoUs from (VFNet: the refined ones)."""
    return outputs.pred_boxes()


def count(model: torch.nn.Module, batches: list, dynamic: bool) -> tuple[int, int, int]:
    """(GTs without a positive, GTs, positives) over ``batches``."""
    empty = total = positives = 0
    for batch in batches:
        with torch.no_grad():
            outputs = model(batch.images)
        pred = predicted_boxes(model, outputs) if dynamic else None
        assignment = atss_assign(outputs.anchors, outputs.num_anchors_per_level, batch.gt_boxes.float(),
                                 batch.gt_valid, pred)
        for image in range(batch.gt_boxes.shape[0]):
            num_gts = int(batch.gt_valid[image].sum())
            gt_index = assignment.gt_index[image][assignment.positive[image]]
            per_gt = torch.bincount(gt_index, minlength=batch.gt_boxes.shape[1])[:num_gts]
            empty += int((per_gt == 0).sum())
            total += num_gts
            positives += int(per_gt.sum())
    return empty, total, positives


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--dataset", help="configs/experiments/<dataset>.yaml overrides (data settings)")
    parser.add_argument("--batches", type=int, default=4)
    args = parser.parse_intermixed_args(argv)
    torch.set_num_threads(1)
    overrides = [*(dataset_overrides(args.dataset) if args.dataset else []), *args.overrides]
    cfg = load_config(args.config, overrides)
    split = load_split(cfg.data, cfg.data.train_split)
    cfg = with_num_classes(cfg, split.meta)
    stream = iter(build_train_loader(split.records, cfg.data, batch_size=cfg.solver.batch_size, seed=0))
    batches = [next(stream) for _ in range(args.batches)]
    print("| head | box_init | GTs without a positive (ATSS) | (combined IoUs) | positives per GT (combined) |")
    print("|---|---|---:|---:|---:|")
    for head, box_init in SETTINGS:
        torch.manual_seed(0)
        model = build_detector(dataclasses.replace(cfg.model, head=head, box_init=box_init)).eval()
        atss_empty, total, _ = count(model, batches, dynamic=False)
        dynamic_empty, _, positives = count(model, batches, dynamic=True)
        print(f"| {head} | {box_init} | {100 * atss_empty / total:.1f} % | {100 * dynamic_empty / total:.1f} % "
              f"| {positives / total:.2f} |")
    print(f"({total} GTs in {args.batches} batches of {cfg.solver.batch_size})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
