"""`dynatss train`, `dynatss eval` and `dynatss demo`."""

from __future__ import annotations

import argparse


class _IntermixedParser(argparse.ArgumentParser):
    """Lets ``key=value`` overrides come before and after the options (``cfg.yaml --resume a=1``).

    Plain argparse stops filling a ``nargs="*"`` positional at the first option; its intermixed
    mode does not, but cannot be used on the top-level parser (it has sub-commands).
    """

    _intermixed_active = False

    def parse_known_args(self, args=None, namespace=None):
        if self._intermixed_active:  # parse_known_intermixed_args calls back into this method
            return super().parse_known_args(args, namespace)
        self._intermixed_active = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixed_active = False


def _add_parser(subparsers: argparse._SubParsersAction, name: str, help: str) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help)
    parser.__class__ = _IntermixedParser
    return parser


def _train(args: argparse.Namespace) -> int:
    from dynatss.config import load_config
    from dynatss.engine.train import train

    overrides = list(args.overrides)
    if args.output_dir:
        overrides.append(f"train.output_dir={args.output_dir}")
    train(load_config(args.config, overrides), resume=args.resume, overwrite=args.overwrite)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from dynatss.atomic import check_writable_file
    from dynatss.engine.commands import run_eval
    from dynatss.engine.inference import checkpoint_config
    from dynatss.errors import DynatssError

    if args.score_threshold is not None and not 0.0 <= args.score_threshold <= 1.0:
        raise DynatssError(f"--score-threshold must be in [0, 1], got {args.score_threshold}")
    if args.output:  # before anything is read or evaluated (run_eval checks the default location)
        check_writable_file(args.output, what="detections file (--output)")
    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config:  # `dynatss eval --weights W key=value`: no config file
        config, overrides = None, [config, *overrides]
    cfg = checkpoint_config(args.weights, config, overrides)
    run_eval(cfg, args.weights, split=args.split, output=args.output, score_threshold=args.score_threshold)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from dynatss.engine.commands import run_demo

    run_demo(args.output_dir, args.overrides)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    train = _add_parser(subparsers, "train", help="train a detector from a YAML config")
    train.add_argument("config", help="YAML config file (configs/*.yaml)")
    train.add_argument("overrides", nargs="*", help="key.sub=value config overrides")
    train.add_argument("--output-dir", help="run directory (default: train.output_dir)")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in RUN_DIR from its newest readable checkpoint, with its own settings")
    train.add_argument("--overwrite", action="store_true",
                       help="delete the run already in RUN_DIR (config, metrics, checkpoints, logs) and start anew")
    train.set_defaults(func=_train)

    evaluate = _add_parser(subparsers, "eval", help="COCO metrics of a checkpoint on a dataset split")
    evaluate.add_argument("config", nargs="?", help="YAML config file (default: the one saved in the checkpoint)")
    evaluate.add_argument("overrides", nargs="*", help="key.sub=value config overrides")
    evaluate.add_argument("--weights", required=True, help="checkpoint (.pth) or .safetensors file")
    evaluate.add_argument("--split", help="dataset split (default: data.val_split)")
    evaluate.add_argument("--output", help="detections JSON (default: RUN_DIR/eval/detections_SPLIT.json); "
                          "PR curves, confusion matrix and per_class_SPLIT.json go beside it")
    evaluate.add_argument("--score-threshold", type=float,
                          help="score at which per-class precision/recall/F1 and the confusion matrix are counted "
                          "(default 0.3, predict's display threshold; AP uses every detection)")
    evaluate.set_defaults(func=_eval)

    demo = _add_parser(subparsers, "demo", help="train and evaluate on built-in synthetic data (CPU, minutes)")
    demo.add_argument("overrides", nargs="*", help="key.sub=value overrides of configs/demo.yaml")
    demo.add_argument("--output-dir", default="runs/demo", help="run directory (default: runs/demo)")
    demo.set_defaults(func=_demo)
