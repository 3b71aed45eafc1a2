"""`dynatss assign`: ATSS and Dynamic ATSS assignment on one image, drawn GT by GT."""

from __future__ import annotations

import argparse
from pathlib import Path

from dynatss.errors import DynatssError
from dynatss.reports.assign_view import (
    DEFAULT_MAX_GTS,
    ground_truth_from_dataset,
    ground_truth_from_json,
    view_assignment,
)

from .options import add_parser, add_weights_options, load_detector, split_overrides


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_parser(
        subparsers, "assign", help="draw ATSS vs combined-IoU label assignment for the ground truth of one image",
        description="For each ground-truth box: its candidates, the adaptive threshold and the positives under "
                    "plain ATSS (anchor IoU) and under the run's combined IoU (predicted + anchor IoU).",
    )
    parser.add_argument("positional", nargs="+", metavar="IMAGE | key=value", help="a jpg/png image, and config overrides")
    add_weights_options(parser, weights_help="checkpoint (.pth) or .safetensors file",
                        out_help="output folder (default: RUN_DIR/assign of the weights)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--annotations", metavar="JSON",
                        help='boxes as [{"box": [x1, y1, x2, y2], "class_name": "..."}] in image pixels, '
                             "or predict's detections.json (default: the run's dataset)")
    source.add_argument("--dataset", metavar="ROOT", help="dataset holding IMAGE (default: the run's data.root)")
    parser.add_argument("--format", choices=("coco", "voc", "yolo"), help="format of --dataset (default: detected)")
    parser.add_argument("--split", action="append",
                        help="split(s) to look IMAGE up in (default: the run's train and val splits / all splits)")
    parser.add_argument("--gts", type=int, nargs="+", metavar="INDEX", help="GT indices to draw (default: automatic)")
    parser.add_argument("--max-gts", type=int, default=DEFAULT_MAX_GTS,
                        help="GTs drawn when --gts is not given: those whose positives change most "
                             f"(default {DEFAULT_MAX_GTS})")
    parser.set_defaults(func=run_assign)


def run_assign(args: argparse.Namespace) -> int:
    positional, overrides = split_overrides(args.positional)
    if len(positional) != 1:
        raise DynatssError(f"give one image, got {len(positional)}: {positional}")
    image = Path(positional[0])
    if not image.is_file():
        raise DynatssError(f"{image}: no such image file")
    if args.format and not args.dataset:
        raise DynatssError("--format describes --dataset; give --dataset ROOT too")
    if args.max_gts < 1:
        raise DynatssError(f"--max-gts must be >= 1, got {args.max_gts}")
    detector = load_detector(args, overrides)
    cfg = detector.config
    if args.annotations:
        truth = ground_truth_from_json(Path(args.annotations), image)
    elif args.dataset:
        truth = ground_truth_from_dataset(Path(args.dataset), args.format, args.split or [], image)
    else:
        splits = args.split or list(dict.fromkeys([cfg.data.train_split, cfg.data.val_split]))
        fmt = "coco" if cfg.data.format == "synthetic" else cfg.data.format
        truth = ground_truth_from_dataset(Path(cfg.data.root), fmt, splits, image)
    out = Path(args.out) if args.out else detector.run_dir / "assign"
    view = view_assignment(detector, image, truth, out, gts=args.gts, max_gts=args.max_gts)
    print(view.table)
    print(f"wrote {view.figure} and {view.numbers}")
    return 0
