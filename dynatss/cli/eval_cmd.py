"""`dynatss eval`: COCO metrics of trained weights (a checkpoint, safetensors or an ONNX export) on a split.

Writes, in ``--out`` (default ``RUN_DIR/eval`` of the weights, whatever the current folder), the
detections as a COCO results JSON (``detections_SPLIT.json``), PR curves per class, the confusion
matrix and the per-class precision / recall / F1 at ``--score-threshold`` (``per_class_SPLIT.json``).
Under torchrun every process evaluates its shard and the first one writes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dynatss.atomic import check_writable_folder
from dynatss.config import DISPLAY_SCORE_THRESHOLD
from dynatss.engine.build import resolve_device
from dynatss.engine.distributed import cleanup_distributed, setup_distributed
from dynatss.engine.evaluate import format_table, write_detections
from dynatss.errors import DynatssError
from dynatss.reports.evaluation import analyse, class_table, write_evaluation

from .options import add_parser, add_weights_options, check_fraction, load_detector, split_overrides


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_parser(subparsers, "eval", help="COCO metrics of trained weights on a dataset split")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    add_weights_options(parser, weights_help="checkpoint (.pth), .safetensors or .onnx file",
                        out_help="folder for the detections JSON, PR curves, confusion matrix and per-class "
                             "numbers (default: RUN_DIR/eval of the weights)")
    parser.add_argument("--split", help="dataset split (default: data.val_split)")
    parser.add_argument("--score-threshold", type=float, default=DISPLAY_SCORE_THRESHOLD,
                        help="score at which per-class precision/recall/F1 and the confusion matrix are counted "
                        f"(default {DISPLAY_SCORE_THRESHOLD}, predict's; AP uses every detection)")
    parser.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    positional, overrides = split_overrides(args.overrides)
    if positional:
        raise DynatssError(f"give the config as --config {positional[0]} (eval takes no positional config)")
    check_fraction("--score-threshold", args.score_threshold)
    if args.out:  # before anything is read or evaluated
        check_writable_folder(args.out, what="--out folder")
    weights = Path(args.weights)
    ctx = setup_distributed(resolve_device(args.device, setting="--device").type)
    try:
        detector = load_detector(args, overrides, local_rank=ctx.local_rank)
        out_dir = Path(args.out) if args.out else detector.run_dir / "eval"
        if ctx.is_main:  # before the evaluation, not after it
            check_writable_folder(out_dir, what="--out folder (default: RUN_DIR/eval)")
        if detector.config is None:
            raise DynatssError(f"{weights}: no config names the data to evaluate on; give --config")
        split = args.split or detector.config.data.val_split
        result = detector.evaluate(split, rank=ctx.rank, world_size=ctx.world_size)
        if ctx.is_main:
            print(f"data {split}: {len(result.records)} images")
            detections = write_detections(result.detections, out_dir / f"detections_{split}.json")
            print(format_table(result))
            print(f"detections: {detections}")
            analysis = analyse(result.records, result.meta, result.detections, score_threshold=args.score_threshold)
            files = write_evaluation(analysis, out_dir, name=split)
            print(class_table(analysis))
            print(f"figures: {files.pr_curves}, {files.confusion_matrix}; numbers: {files.summary}")
    finally:
        cleanup_distributed()
    return 0
