"""`dynatss predict`: detect objects in images, folders, globs and videos with trained weights."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dynatss.config import DISPLAY_SCORE_THRESHOLD
from dynatss.errors import DynatssError
from dynatss.reports.predictions import check_output_folder, write_predictions

from .options import add_parser, add_weights_options, check_fraction, load_detector, split_overrides


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_parser(subparsers, "predict", help="detect objects in images and videos with trained weights")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image files, folders, glob patterns ('imgs/*.jpg'), video files (.mp4, .avi, .mov, "
                             ".mkv, .webm), and key=value config overrides")
    add_weights_options(parser, weights_help="checkpoint (.pth), .safetensors or .onnx file",
                        out_help="folder for drawn images, videos and their JSON (default: RUN_DIR/predictions "
                             "of the weights)")
    parser.add_argument("--score-threshold", type=float, default=DISPLAY_SCORE_THRESHOLD,
                        help=f"keep detections scoring at least this (class x quality; default {DISPLAY_SCORE_THRESHOLD})")
    parser.add_argument("--nms-iou", type=float, help="NMS IoU threshold (default: inference.nms_threshold)")
    parser.add_argument("--classes", type=int, nargs="+", metavar="INDEX", help="class indices to keep (default: all)")
    parser.add_argument("--max-detections", type=int, help="per image (default: inference.max_detections)")
    parser.add_argument("--batch-size", type=int, default=1,
                        help="images per forward pass (1: no padding from other images; more: faster on a GPU)")
    parser.add_argument("--max-pixels", type=int, help="refuse larger images (default: the run's data.max_image_pixels)")
    parser.set_defaults(func=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    inputs, overrides = split_overrides(args.inputs)
    if not inputs:
        raise DynatssError("give at least one image, folder, glob or video to predict on")
    if args.batch_size < 1:
        raise DynatssError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.max_pixels is not None and args.max_pixels < 1:
        raise DynatssError(f"--max-pixels must be >= 1, got {args.max_pixels}")
    check_fraction("--score-threshold", args.score_threshold)
    check_fraction("--nms-iou", args.nms_iou)
    if args.out:
        check_output_folder(args.out)  # before any model is loaded or image decoded
    if args.max_pixels is not None:
        overrides = [*overrides, f"data.max_image_pixels={args.max_pixels}"]
    detector = load_detector(args, overrides, score_threshold=args.score_threshold)
    results = detector.stream(inputs, nms_iou=args.nms_iou, classes=args.classes, max_detections=args.max_detections,
                              batch_size=args.batch_size, errors="keep")
    out = Path(args.out) if args.out else detector.run_dir / "predictions"
    summary = write_predictions(results, out, score_threshold=args.score_threshold,
                                class_names=detector.class_names)
    if summary.images or not summary.videos:
        print(f"predicted {len(summary.images)} images ({summary.detections} detections): {summary.detections_path}")
    for source, video, lines, frames in summary.videos:
        print(f"predicted {frames} frames of {source}: {video}, {lines}")
    if summary.failures:
        print(f"{len(summary.failures)} inputs could not be used (see warnings above)", file=sys.stderr)
        return 1
    return 0
