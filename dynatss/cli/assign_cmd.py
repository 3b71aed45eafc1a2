"""`dynatss assign`: ATSS and Dynamic ATSS assignment on one image, drawn GT by GT."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_MAX_GTS = 4


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "assign", help="draw ATSS vs combined-IoU label assignment for the ground truth of one image",
        description="For each ground-truth box: its candidates, the adaptive threshold and the positives under "
                    "plain ATSS (anchor IoU) and under the run's combined IoU (predicted + anchor IoU).",
    )
    parser.add_argument("image", metavar="IMAGE", help="a jpg/png image")
    parser.add_argument("--weights", required=True, help="checkpoint (.pth) or .safetensors file")
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
    parser.add_argument("--out", help="output folder (default: RUN_DIR/assign beside the checkpoints/ folder)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.set_defaults(func=run_assign)


def _default_out(weights: Path) -> Path:
    folder = weights.resolve().parent
    return (folder.parent if folder.name == "checkpoints" else folder) / "assign"


def run_assign(args: argparse.Namespace) -> int:
    from dynatss.engine.inference import load_detector
    from dynatss.errors import DynatssError
    from dynatss.tools.assign_view import ground_truth_from_dataset, ground_truth_from_json, view_assignment

    image = Path(args.image)
    if not image.is_file():
        raise DynatssError(f"{image}: no such image file")
    if args.format and not args.dataset:
        raise DynatssError("--format describes --dataset; give --dataset ROOT too")
    if args.max_gts < 1:
        raise DynatssError(f"--max-gts must be >= 1, got {args.max_gts}")
    detector, cfg, _meta = load_detector(args.weights, device=args.device)
    if args.annotations:
        truth = ground_truth_from_json(Path(args.annotations), image)
    elif args.dataset:
        truth = ground_truth_from_dataset(Path(args.dataset), args.format, args.split or [], image)
    else:
        splits = args.split or list(dict.fromkeys([cfg.data.train_split, cfg.data.val_split]))
        fmt = "coco" if cfg.data.format == "synthetic" else cfg.data.format
        truth = ground_truth_from_dataset(Path(cfg.data.root), fmt, splits, image)
    out = Path(args.out) if args.out else _default_out(Path(args.weights))
    view = view_assignment(detector, cfg, image, truth, out, gts=args.gts, max_gts=args.max_gts, device=args.device)
    print(view.table)
    print(f"wrote {view.figure} and {view.numbers}")
    return 0
