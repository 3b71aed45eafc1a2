"""`dynatss report` (one run: metrics, curves, where the detector fails, samples) and `dynatss compare`."""

from __future__ import annotations

import argparse
from pathlib import Path

from dynatss.errors import DynatssError
from dynatss.reports.compare import compare_runs
from dynatss.reports.report import write_report
from dynatss.reports.runs import read_run

from .options import add_parser, add_weights_options, load_detector, split_overrides

DEFAULT_REPORT_IMAGES = 4


def register(subparsers: argparse._SubParsersAction) -> None:
    report = add_parser(subparsers, "report", help="write report.md and report.html of a training run")
    report.add_argument("positional", nargs="*", metavar="RUN_DIR | key=value",
                        help="the run directory (default: the run of --weights) and config overrides")
    add_weights_options(report, weights_required=False,
                        weights_help="weights to evaluate and draw samples with (default: the run's best.pth, "
                                     "else last.pth)",
                        out_help="folder for report.md, report.html and report/ (default: RUN_DIR)")
    report.add_argument("--images", type=int, default=DEFAULT_REPORT_IMAGES,
                        help="validation images with drawn predictions (0: none)")
    report.add_argument("--no-eval", action="store_true",
                        help="skip the PR curves / confusion matrix pass over the validation split")
    report.set_defaults(func=run_report)

    compare = subparsers.add_parser("compare", help="plot and tabulate several training runs")
    compare.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    compare.add_argument("--out", help="output folder (default: compare/ beside the first run)")
    compare.add_argument("--labels", nargs="+", help="one name per run; runs sharing a name are averaged")
    compare.add_argument("--group-by-config", action="store_true",
                         help="average runs whose configs differ only in seed/output dir (mean +- std)")
    compare.add_argument("--smooth", type=int, help="moving-average window in logged points (default: auto)")
    compare.set_defaults(func=run_compare)


def run_report(args: argparse.Namespace) -> int:
    positional, overrides = split_overrides(args.positional)
    if len(positional) > 1:
        raise DynatssError(f"give one run directory, got {positional}")
    if not positional and not args.weights:
        raise DynatssError("give the run directory (RUN_DIR) or --weights")
    run = read_run(positional[0]) if positional else None
    detector = None
    if args.weights or (run is not None and run.checkpoint() is not None):
        args.weights = args.weights or str(run.checkpoint())
        detector = load_detector(args, overrides)
    run_dir = run.run_dir if run is not None else detector.run_dir
    path = write_report(run_dir, detector=detector, out_dir=Path(args.out) if args.out else None,
                        num_images=args.images, evaluation=not args.no_eval)
    print(f"wrote {path} and {path.with_suffix('.html')}")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else Path(args.run_dirs[0]).resolve().parent / "compare"
    written = compare_runs(
        args.run_dirs, out, labels=args.labels, group_by_config=args.group_by_config, smooth=args.smooth
    )
    for path in written:
        print(f"wrote {path}")
    return 0
