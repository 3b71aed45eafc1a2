"""`dynatss predict | export | compare | report`: use and inspect trained runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Display threshold for predictions drawn on images (evaluation keeps everything above 0.05);
# the same as the Python API's (dynatss.api.detector.DEFAULT_SCORE_THRESHOLD).
DEFAULT_PREDICT_THRESHOLD = 0.3
DEFAULT_REPORT_IMAGES = 4


def register(subparsers: argparse._SubParsersAction) -> None:
    predict = subparsers.add_parser("predict", help="detect objects in images and videos with a trained model")
    predict.add_argument("inputs", nargs="+", metavar="INPUT",
                         help="image files, folders of jpg/png, or video files (.mp4, .avi, .mov, .mkv, .webm)")
    predict.add_argument("--weights", required=True, help="checkpoint (.pth), .safetensors or .onnx file")
    predict.add_argument("--config", help="YAML config (default: the one saved in the checkpoint)")
    predict.add_argument("--out", required=True, help="folder for drawn images, videos and their JSON")
    predict.add_argument("--score-threshold", type=float, default=DEFAULT_PREDICT_THRESHOLD)
    predict.add_argument("--device", default="auto", help="auto, cpu, cuda (or gpu), cuda:N (default: auto)")
    predict.add_argument("--batch-size", type=int, default=1,
                         help="images per forward pass (1: no padding from other images; more: faster on a GPU)")
    predict.add_argument("--max-pixels", type=int,
                         help="refuse larger images (default: the run's data.max_image_pixels)")
    predict.set_defaults(func=run_predict)

    export = subparsers.add_parser("export", help="export a checkpoint to ONNX or safetensors")
    export.add_argument("--weights", required=True, help="checkpoint (.pth) or .safetensors file")
    export.add_argument("--format", choices=("onnx", "safetensors"), default="onnx",
                        help="onnx: any batch and image size, post-processing inside (docs/export.md)")
    export.add_argument("--out", help="output file (default: the weights path with the format's suffix)")
    export.set_defaults(func=run_export)

    compare = subparsers.add_parser("compare", help="plot and tabulate several training runs")
    compare.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    compare.add_argument("--out", help="output folder (default: compare/ beside the first run)")
    compare.add_argument("--labels", nargs="+", help="one name per run; runs sharing a name are averaged")
    compare.add_argument("--group-by-config", action="store_true",
                         help="average runs whose configs differ only in seed/output dir (mean +- std)")
    compare.add_argument("--smooth", type=int, help="moving-average window in logged points (default: auto)")
    compare.set_defaults(func=run_compare)

    report = subparsers.add_parser("report", help="write RUN_DIR/report.md and report.html")
    report.add_argument("run_dir", metavar="RUN_DIR")
    report.add_argument("--images", type=int, default=DEFAULT_REPORT_IMAGES,
                        help="validation images with drawn predictions (0: none)")
    report.add_argument("--no-eval", action="store_true",
                        help="skip the PR curves / confusion matrix pass over the validation split")
    report.add_argument("--device", default="auto", help="auto, cpu, cuda (or gpu), cuda:N (default: auto)")
    report.set_defaults(func=run_report)


def run_predict(args: argparse.Namespace) -> int:
    from dynatss.api import Detector
    from dynatss.engine.build import resolve_device
    from dynatss.errors import DynatssError
    from dynatss.tools.predict import check_output_folder, predict_files
    from dynatss.tools.video import is_video

    if args.batch_size < 1:
        raise DynatssError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.max_pixels is not None and args.max_pixels < 1:
        raise DynatssError(f"--max-pixels must be >= 1, got {args.max_pixels}")
    if not 0.0 <= args.score_threshold <= 1.0:
        raise DynatssError(f"--score-threshold must be in [0, 1], got {args.score_threshold}")
    check_output_folder(args.out)  # before any model is loaded or image decoded
    resolve_device(args.device, setting="--device")
    videos = [item for item in args.inputs if is_video(item)]
    images = [item for item in args.inputs if not is_video(item)]
    detector = Detector.from_checkpoint(
        args.weights, config=args.config, device=args.device, score_threshold=args.score_threshold
    )
    failed = 0
    if images:
        summary = predict_files(detector, images, args.out, batch_size=args.batch_size, max_pixels=args.max_pixels)
        count = sum(len(p.detections) for p in summary.predictions)
        print(f"predicted {len(summary.predictions)} images ({count} detections): {summary.detections_path}")
        if summary.failures:
            print(f"{len(summary.failures)} images could not be used (see warnings above)", file=sys.stderr)
            failed = 1
    for video in videos:
        written = detector.predict_video(video, args.out, batch_size=args.batch_size)
        print(f"predicted {written.frames} frames of {video}: {written.video_path}, {written.frames_path}")
    return failed


def run_export(args: argparse.Namespace) -> int:
    from dynatss.tools.export import export_weights

    result = export_weights(args.weights, args.format, out=args.out)
    print(f"wrote {result.path}")
    if result.input_names or result.output_names:
        print(f"inputs: {', '.join(result.input_names)}")
        print(f"outputs: {', '.join(result.output_names)}")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from dynatss.tools.compare import compare_runs

    out = Path(args.out) if args.out else Path(args.run_dirs[0]).resolve().parent / "compare"
    written = compare_runs(
        args.run_dirs, out, labels=args.labels, group_by_config=args.group_by_config, smooth=args.smooth
    )
    for path in written:
        print(f"wrote {path}")
    return 0


def run_report(args: argparse.Namespace) -> int:
    from dynatss.engine.build import resolve_device
    from dynatss.tools.report import write_report

    device = resolve_device(args.device, setting="--device")
    path = write_report(Path(args.run_dir), num_images=args.images, device=device, evaluation=not args.no_eval)
    print(f"wrote {path} and {path.with_suffix('.html')}")
    return 0
