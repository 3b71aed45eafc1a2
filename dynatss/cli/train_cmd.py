"""`dynatss train` and `dynatss demo` (train, evaluate and report on built-in synthetic data)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import yaml

from dynatss.api.detector import Detector
from dynatss.config import Config, load_config
from dynatss.engine.run_dir import holds_run
from dynatss.engine.train import train
from dynatss.errors import DynatssError
from dynatss.reports.report import write_report
from dynatss.reports.runs import read_run

from .options import add_parser

# configs/ sits at the repository root (the package is installed editable, see README).
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
DEMO_CONFIG = CONFIG_DIR / "demo.yaml"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_parser(subparsers, "train", help="train a detector from a YAML config")
    parser.add_argument("config", help="YAML config file (configs/*.yaml)")
    parser.add_argument("overrides", nargs="*", help="key.sub=value config overrides")
    parser.add_argument("--output-dir", help="run directory (default: train.output_dir)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in RUN_DIR from its newest readable checkpoint, with its own settings")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete the run already in RUN_DIR (config, metrics, checkpoints, logs) and start anew")
    parser.set_defaults(func=run_train)

    demo = add_parser(subparsers, "demo", help="train and evaluate on built-in synthetic data (CPU, minutes)")
    demo.add_argument("overrides", nargs="*", help="key.sub=value overrides of configs/demo.yaml")
    demo.add_argument("--output-dir", default="runs/demo", help="run directory (default: runs/demo)")
    demo.set_defaults(func=run_demo_command)


def run_train(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    if args.output_dir:
        overrides.append(f"train.output_dir={args.output_dir}")
    train(load_config(args.config, overrides), resume=args.resume, overwrite=args.overwrite)
    return 0


def run_demo_command(args: argparse.Namespace) -> int:
    run_demo(args.output_dir, args.overrides)
    return 0


def demo_config(output_dir: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """configs/demo.yaml, written into ``output_dir`` with its synthetic data in ``output_dir/data``."""
    if not DEMO_CONFIG.is_file():
        raise DynatssError(f"{DEMO_CONFIG}: demo config not found (run from a source checkout)")
    output_dir = Path(output_dir)
    defaults = [f"train.output_dir={output_dir}", f"data.root={output_dir / 'data'}"]
    return load_config(DEMO_CONFIG, [*defaults, *overrides])


def _holds_other_run(output_dir: Path) -> bool:
    """Whether ``output_dir`` holds a training run that is not an earlier demo (which is replaced)."""
    if not holds_run(output_dir):
        return False
    try:
        saved = yaml.safe_load((output_dir / "config.yaml").read_text()) or {}
        data = saved.get("data", {})
        return data.get("format") != "synthetic" or Path(data.get("root", "")).resolve() != (output_dir / "data").resolve()
    except (OSError, yaml.YAMLError, AttributeError, TypeError):
        return True


def run_demo(output_dir: str | Path = "runs/demo", overrides: list[str] | tuple[str, ...] = ()):
    """Generate synthetic data, train, evaluate, write a report; prints the COCO table and the time.
    Returns the final evaluation (dynatss.engine.evaluate.EvalResult).

    An earlier demo run in ``output_dir`` is replaced (its cached data kept); any other run is not.
    """
    started = time.perf_counter()
    cfg = demo_config(output_dir, overrides)
    if _holds_other_run(Path(output_dir)):
        raise DynatssError(f"{output_dir}: holds a training run that is not a demo run; choose another --output-dir")
    result = train(cfg, overwrite=holds_run(Path(output_dir)))
    if result.final_eval is None:
        raise DynatssError(f"{cfg.data.root}: the demo's validation split is empty")
    checkpoint = read_run(result.run_dir).checkpoint()  # best.pth, else last.pth
    detector = Detector.from_checkpoint(checkpoint, device=cfg.train.device) if checkpoint else None
    path = write_report(result.run_dir, detector=detector)
    print(f"report: {path}")
    print(f"demo finished in {time.perf_counter() - started:.0f} s; run directory: {result.run_dir}")
    return result.final_eval
